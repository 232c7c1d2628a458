"""Prompt-injection suite (AgentDojo style): attacks placed in every place outside text reaches the agent."""
