"""Persistence for the decision core (SQLAlchemy 2; SQLite or PostgreSQL)."""
