"""Policy documents and their retrieval.

``policies/`` holds the documents (markdown with front matter, parsed by
``risk.policy``); ``knowledge.embeddings`` is the offline MiniLM embedding
function for chromadb, and ``knowledge.index`` the passage index. Those two
import torch and chromadb, so they are not imported here: ``from knowledge
import POLICY_DIR`` stays cheap.
"""

from pathlib import Path

POLICY_DIR = Path(__file__).parent / "policies"
