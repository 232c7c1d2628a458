"""glassgate agent."""
