"""glassgate tools."""
