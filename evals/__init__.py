"""glassgate evals."""
