"""Policy passages in chromadb: incremental indexing, semantic search, exact lookup.

A passage is one ``##`` section of one version of one policy document. Its id is
``POL-X-001@v2#3-some-section``, so every version stays in the collection and a
decision made under version 1 can still cite, and fetch, version 1 after the
policy moved on. Each passage's metadata carries a ``latest`` flag, kept true
only on the highest version of its policy; semantic search filters on it by
default. Lookups by id and section are metadata filters, never similarity.

This module takes generic passages (it does not know the policy parser), and
reads no environment: paths and URLs are arguments.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.types import EmbeddingFunction
from chromadb.config import Settings
from pydantic import BaseModel, ConfigDict, Field, computed_field

from knowledge.embeddings import MiniLMEmbeddingFunction


class Passage(BaseModel):
    """One section of one version of a policy document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    section: str = Field(min_length=1)  # the heading's anchor, e.g. "2-thresholds-for-ot-systems"
    heading: str
    text: str
    title: str  # the document's title

    @computed_field  # type: ignore[prop-decorator]
    @property
    def citation(self) -> str:
        """``POL-OT-004 v1 §2-thresholds-for-ot-systems``."""
        return f"{self.policy_id} v{self.version} §{self.section}"

    @property
    def id(self) -> str:
        return passage_id(self.policy_id, self.version, self.section)

    def embedding_text(self) -> str:
        """What is embedded: the title and heading give a short section its context."""
        return f"{self.title}. {self.heading}\n\n{self.text}"


class Hit(Passage):
    """A retrieved passage. ``score`` is the cosine similarity (1 - cosine distance), in [-1, 1];
    an exact lookup by id and section scores 1.0."""

    score: float


class SyncReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    added: int
    updated: int
    removed: int
    unchanged: int


def passage_id(policy_id: str, version: int, section: str) -> str:
    return f"{policy_id}@v{version}#{section}"


def _content_hash(p: Passage, ordinal: int) -> str:
    payload = json.dumps([p.title, p.heading, p.text, ordinal], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _passage(doc: str | None, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"policy_id": meta["policy_id"], "version": int(meta["version"]), "section": meta["section"],
            "heading": meta["heading"], "title": meta["title"], "text": doc or ""}  # fmt: skip


def _rows(got: Any) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(id, document, metadata) for every record of a chroma ``get`` result."""
    ids = list(got["ids"])
    docs = got.get("documents") or [None] * len(ids)
    metas = got.get("metadatas") or [{}] * len(ids)
    return [(i, d, dict(m or {})) for i, d, m in zip(ids, docs, metas, strict=True)]


def _and(*clauses: dict[str, Any] | None) -> dict[str, Any] | None:
    kept = [c for c in clauses if c]
    return None if not kept else kept[0] if len(kept) == 1 else {"$and": kept}


class PolicyIndex:
    """Policy passages in one chroma collection (cosine space, offline MiniLM embeddings).

    Args:
        client: any chromadb client (see :meth:`open_persistent`, :meth:`open_http`).
        collection: the collection's name.
        embedding_function: defaults to the bundled offline MiniLM; chroma's own default
            would try to download a model, so one is always passed.
    """

    def __init__(
        self,
        client: ClientAPI,
        *,
        collection: str = "policies",
        embedding_function: EmbeddingFunction[Any] | None = None,
    ) -> None:
        self.client = client
        self._ef = embedding_function if embedding_function is not None else MiniLMEmbeddingFunction()
        self._col = client.get_or_create_collection(
            collection,
            embedding_function=cast(Any, self._ef),  # chroma types it over Documents | Images; ours embeds Documents
            configuration={"hnsw": {"space": "cosine"}},
        )

    @classmethod
    def open_persistent(cls, path: str | Path, **kwargs: Any) -> PolicyIndex:
        """An index in an embedded chroma database under ``path`` (created if missing)."""
        client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
        return cls(client, **kwargs)

    @classmethod
    def open_http(cls, url: str, **kwargs: Any) -> PolicyIndex:
        """An index on a chroma server, e.g. ``http://127.0.0.1:8001`` (port 8000 when none is given)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"expected a chroma server URL like http://host:port, got {url!r}")
        client = chromadb.HttpClient(
            host=parts.hostname, port=parts.port or 8000, ssl=parts.scheme == "https",
            settings=Settings(anonymized_telemetry=False),
        )  # fmt: skip
        return cls(client, **kwargs)

    def count(self) -> int:
        return self._col.count()

    def sync(self, passages: Iterable[Passage]) -> SyncReport:
        """Bring the index in line with ``passages``, embedding only what is new or changed.

        For every (policy_id, version) present in ``passages``, stored sections that are
        not among them are removed; other versions and other policies are left alone.
        The ``latest`` flag is then recomputed for every policy touched.

        Raises:
            ValueError: the same section of the same version appears twice.
        """
        groups: dict[tuple[str, int], list[Passage]] = defaultdict(list)
        seen: set[str] = set()
        for p in passages:
            if p.id in seen:
                raise ValueError(f"duplicate passage {p.id}")
            seen.add(p.id)
            groups[(p.policy_id, p.version)].append(p)
        latest = {pid: max([*self._versions(pid), *(v for q, v in groups if q == pid)]) for pid, _ in groups}
        changed: list[tuple[Passage, dict[str, Any]]] = []
        added = updated = removed = unchanged = 0
        for (pid, ver), group in groups.items():
            got = self._col.get(where=_and({"policy_id": pid}, {"version": ver}), include=["metadatas"])
            stored = {i: m["content_hash"] for i, _, m in _rows(got)}
            for ordinal, p in enumerate(group):
                h = _content_hash(p, ordinal)
                if stored.get(p.id) == h:
                    unchanged += 1
                    continue
                added, updated = (added, updated + 1) if p.id in stored else (added + 1, updated)
                meta = {"policy_id": pid, "version": ver, "section": p.section, "heading": p.heading,
                        "title": p.title, "ordinal": ordinal, "content_hash": h, "latest": ver == latest[pid]}  # fmt: skip
                changed.append((p, meta))
            gone = sorted(set(stored) - {p.id for p in group})
            if gone:
                self._col.delete(ids=gone)
                removed += len(gone)
        if changed:
            self._col.upsert(
                ids=[p.id for p, _ in changed],
                embeddings=self._ef([p.embedding_text() for p, _ in changed]),
                documents=[p.text for p, _ in changed],
                metadatas=[m for _, m in changed],
            )
        for pid in latest:
            self._refresh_latest(pid)
        return SyncReport(added=added, updated=updated, removed=removed, unchanged=unchanged)

    def search(self, query: str, *, k: int = 5, policy_id: str | None = None, latest_only: bool = True) -> list[Hit]:
        """The ``k`` passages nearest in meaning to ``query``, best first.

        By default only the latest version of each policy is searched; pass
        ``latest_only=False`` to search every stored version.
        """
        if k < 1 or not query.strip():
            return []
        where = _and({"latest": True} if latest_only else None, {"policy_id": policy_id} if policy_id else None)
        res = self._col.query(
            query_texts=[query], n_results=k, where=where, include=["documents", "metadatas", "distances"]
        )
        docs, metas, dists = (res["documents"] or [[]])[0], (res["metadatas"] or [[]])[0], (res["distances"] or [[]])[0]
        return [
            Hit(**_passage(d, dict(m)), score=1.0 - float(dist)) for d, m, dist in zip(docs, metas, dists, strict=True)
        ]

    def get(self, policy_id: str, section: str, version: int | None = None) -> Hit | None:
        """The passage with exactly this policy id and section anchor (metadata match, not similarity).

        ``version=None`` means the latest stored version of the policy; None is returned
        when that version has no such section.
        """
        if version is not None:
            got = self._col.get(ids=[passage_id(policy_id, version, section)], include=["documents", "metadatas"])
        else:
            where = _and({"policy_id": policy_id}, {"section": section}, {"latest": True})
            got = self._col.get(where=where, include=["documents", "metadatas"])
        rows = _rows(got)
        return Hit(**_passage(rows[0][1], rows[0][2]), score=1.0) if rows else None

    def sections(self, policy_id: str, *, version: int | None = None) -> list[Passage]:
        """Every section of the policy (latest version by default), in document order."""
        which = {"latest": True} if version is None else {"version": version}
        got = self._col.get(where=_and({"policy_id": policy_id}, which), include=["documents", "metadatas"])
        rows = sorted(_rows(got), key=lambda r: int(r[2]["ordinal"]))
        return [Passage(**_passage(d, m)) for _, d, m in rows]

    def _versions(self, policy_id: str) -> set[int]:
        got = self._col.get(where={"policy_id": policy_id}, include=["metadatas"])
        return {int(m["version"]) for _, _, m in _rows(got)}

    def _refresh_latest(self, policy_id: str) -> None:
        """Set ``latest`` on the highest stored version of the policy, and only there."""
        rows = _rows(self._col.get(where={"policy_id": policy_id}, include=["metadatas"]))
        top = max((int(m["version"]) for _, _, m in rows), default=0)
        stale = [(i, m) for i, _, m in rows if m["latest"] != (m["version"] == top)]
        if stale:
            self._col.update(
                ids=[i for i, _ in stale], metadatas=[{**m, "latest": m["version"] == top} for _, m in stale]
            )
