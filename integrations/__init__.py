"""glassgate integrations."""
