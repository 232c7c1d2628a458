"""Policy documents and their retrieval."""

from pathlib import Path

POLICY_DIR = Path(__file__).parent / "policies"
