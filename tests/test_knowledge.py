"""Policy knowledge: the corpus, offline embeddings and the chroma index, with the real model and real chroma."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
import yaml
from chromadb.config import Settings
from pydantic import ValidationError

import knowledge.embeddings as emb
from knowledge import POLICY_DIR
from knowledge.embeddings import EF_NAME, MiniLMEmbeddingFunction, bundled_model_path, load_model
from knowledge.index import Passage, PolicyIndex
from risk.policy import PolicyDoc, PolicyError, PolicySet, load_policies

ROOT = Path(__file__).resolve().parents[1]
NEW_DOCS = {"POL-EXC-007": "exception-process.md", "POL-DATA-008": "data-export.md",
            "POL-PRIV-009": "privileged-access.md", "POL-INC-010": "incident-handling.md"}  # fmt: skip


def passages_of(doc: PolicyDoc) -> list[Passage]:
    """The bridge tools/ will own in production: one passage per ``##`` section."""
    return [
        Passage(policy_id=doc.id, version=doc.version, section=anchor, heading=heading, text=text, title=doc.title)
        for anchor, (heading, text) in doc.sections.items()
    ]


def corpus_passages(ps: PolicySet) -> list[Passage]:
    return [p for d in ps.docs for p in passages_of(d)]


class CountingEF(MiniLMEmbeddingFunction):
    """The production embedding function, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def __call__(self, input: Any) -> Any:
        self.texts += len(input)
        return super().__call__(input)


@pytest.fixture(scope="module")
def corpus() -> PolicySet:
    return load_policies(POLICY_DIR)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chroma")


@pytest.fixture(scope="module")
def index(corpus: PolicySet, store: Path) -> PolicyIndex:
    """The whole corpus, embedded once for the module."""
    idx = PolicyIndex.open_persistent(store)
    report = idx.sync(corpus_passages(corpus))
    assert (report.added, report.updated, report.removed, report.unchanged) == (len(corpus_passages(corpus)), 0, 0, 0)
    return idx


# --- the corpus -----------------------------------------------------------------


def test_new_documents_are_concise_and_numbered(corpus: PolicySet) -> None:
    for pid, file in NEW_DOCS.items():
        doc = corpus.get(pid)
        assert doc.path == file
        # POL-EXC-007 holds one section per approvable kind (five of them), so it may run longer
        limit = 900 if pid == "POL-EXC-007" else 700
        assert 300 <= len(doc.body.split()) <= limit, (pid, len(doc.body.split()))
        headings = [h for h, _ in doc.sections.values()]
        assert [int(h.split(".")[0]) for h in headings] == list(range(1, len(headings) + 1)), pid
    assert len(corpus.docs) == 10


def test_every_passage_fits_the_model_window(corpus: PolicySet) -> None:
    model = load_model()
    longest = max(len(model.tokenizer(p.embedding_text())["input_ids"]) for p in corpus_passages(corpus))
    assert longest <= model.max_seq_length  # otherwise the tail of a section would silently not be embedded


def test_approvals_front_matter_matches_its_prose(corpus: PolicySet) -> None:
    doc = corpus.get("POL-EXC-007")
    assert doc.approvals == {
        "default_expiry_minutes": 60,
        "kinds": {
            "confirm_denial": {"roles": ["analyst", "policy_owner"], "approvers": 1, "section": "4-confirming-a-denial"},
            "grant_exception": {"roles": ["policy_owner"], "approvers": 1, "max_duration_hours": 72.0,
                                "section": "5-time-boxed-exceptions"},
            "revoke_session": {"roles": ["analyst", "policy_owner"], "approvers": 1, "section": "6-revoking-a-session"},
            "change_threshold": {"roles": ["policy_owner", "admin"], "approvers": 2, "api_only_tiers": ["restricted"],
                                 "section": "7-changing-a-threshold"},
            "promote_model": {"roles": ["policy_owner", "admin"], "approvers": 2,
                              "section": "9-promoting-a-risk-model"},
        },
    }  # fmt: skip
    text = {a: " ".join(t.split()) for a, (_, t) in doc.sections.items()}
    assert "within 60 minutes expires" in text["3-expiry-of-pending-requests"]
    assert "at most 72 hours" in text["5-time-boxed-exceptions"]
    assert "only for the named user and the named resource" in text["5-time-boxed-exceptions"]
    assert "only a policy owner may approve" in text["5-time-boxed-exceptions"].lower()
    assert "two approvals from distinct policy owners or administrators" in text["7-changing-a-threshold"]
    assert "restricted tier is approved only through the Glassgate API" in text["7-changing-a-threshold"]
    promote = text["9-promoting-a-risk-model"]
    assert "two approvals from distinct policy owners or administrators" in promote and "must be none" in promote
    assert "requester can never approve" in text["2-rules-for-every-approval"]
    assert "approvers must be distinct" in text["2-rules-for-every-approval"]
    for kind in ("confirm_denial", "revoke_session"):
        assert (
            "one approval, from an analyst or a policy owner other than the requester"
            in text[doc.approvals["kinds"][kind]["section"]]
        )
    assert all(d.approvals is None for d in corpus.docs if d.id != "POL-EXC-007")


BAD_APPROVALS = {
    "unknown role": (lambda a: a["kinds"]["revoke_session"].update(roles=["analyst", "root"]), "approvals.kinds.revoke_session.roles[1]"),
    "zero approvers": (lambda a: a["kinds"]["change_threshold"].update(approvers=0), "approvals.kinds.change_threshold.approvers"),
    "approvers as text": (lambda a: a["kinds"]["change_threshold"].update(approvers="2"), "approvals.kinds.change_threshold.approvers"),
    "negative duration": (lambda a: a["kinds"]["grant_exception"].update(max_duration_hours=-1), "approvals.kinds.grant_exception.max_duration_hours"),
    "unknown tier": (lambda a: a["kinds"]["change_threshold"].update(api_only_tiers=["secret"]), "approvals.kinds.change_threshold.api_only_tiers[0]"),
    "missing section": (lambda a: a["kinds"]["grant_exception"].update(section="9-nope"), "approvals.kinds.grant_exception.section"),
    "unknown kind field": (lambda a: a["kinds"]["grant_exception"].update(approver=1), "approvals.kinds.grant_exception.approver"),
    "no expiry": (lambda a: a.pop("default_expiry_minutes"), "approvals.default_expiry_minutes"),
    "zero expiry": (lambda a: a.update(default_expiry_minutes=0), "approvals.default_expiry_minutes"),
    "kinds not a mapping": (lambda a: a.update(kinds=["grant_exception"]), "approvals.kinds"),
    "unknown approvals field": (lambda a: a.update(expiry=60), "approvals.expiry"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_APPROVALS))
def test_bad_approvals_block_names_the_field(tmp_path: Path, case: str) -> None:
    for f in POLICY_DIR.glob("*.md"):
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "exception-process.md"
    _, fm_text, body = path.read_text().split("---\n", 2)
    fm = yaml.safe_load(fm_text)
    mutate, field = BAD_APPROVALS[case]
    mutate(fm["approvals"])
    path.write_text("---\n" + yaml.safe_dump(fm, sort_keys=False) + "---\n" + body)
    with pytest.raises(PolicyError) as e:
        load_policies(tmp_path)
    assert (e.value.file, e.value.field) == ("exception-process.md", field)


def test_with_thresholds_keeps_approvals(tmp_path: Path) -> None:
    for f in POLICY_DIR.glob("*.md"):
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "access-tiers.md"
    block = "approvals:\n  default_expiry_minutes: 30\n  kinds:\n    change_threshold: {roles: [admin], approvers: 2, section: 8-changing-a-threshold}\n"
    path.write_text(path.read_text().replace("thresholds:\n", block + "thresholds:\n", 1))
    ps = load_policies(tmp_path)
    new = ps.with_thresholds(policy_id="POL-ACCESS-001", scope="tier:internal", step_up_at=0.5, deny_at=0.9)
    doc = new.get("POL-ACCESS-001")
    assert doc.version == 2 and doc.approvals == ps.get("POL-ACCESS-001").approvals
    assert doc.approvals["kinds"]["change_threshold"]["approvers"] == 2


# --- retrieval ------------------------------------------------------------------

QUESTIONS = {
    "which policy sets the threshold for OT consoles?": {("POL-OT-004", "2-thresholds-for-ot-systems")},
    "how long can an exception last?": {("POL-EXC-007", "5-time-boxed-exceptions")},
    "is Tor allowed to restricted data": {("POL-NET-005", "3-tor")},
    "what happens when a device loses EDR mid-session": {
        ("POL-SES-006", "3-posture-lost-during-a-session"), ("POL-DEV-002", "5-endpoint-detection-and-response")},
    "who can approve a threshold change?": {("POL-EXC-007", "7-changing-a-threshold")},
    "can IT admins access plant systems?": {("POL-PRIV-009", "5-ot-access-by-non-ot-administrators")},
    "how much data can I export at once?": {("POL-DATA-008", "4-bulk-transfers")},
}  # fmt: skip


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_realistic_questions_find_the_right_section(index: PolicyIndex, question: str) -> None:
    hits = index.search(question, k=5)
    assert len(hits) == 5
    assert (hits[0].policy_id, hits[0].section) in QUESTIONS[question], [h.citation for h in hits]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)


def test_tor_hit_names_the_rule_and_cites_it(index: PolicyIndex) -> None:
    hit = index.search("is Tor allowed to restricted data", k=1)[0]
    assert "net-tor-deny" in hit.text
    assert hit.citation == "POL-NET-005 v1 §3-tor" and hit.title == "Network, travel and VPN"
    assert hit.model_dump()["citation"] == hit.citation


def test_search_can_be_limited_to_one_policy(index: PolicyIndex) -> None:
    hits = index.search("thresholds", k=3, policy_id="POL-OT-004")
    assert len(hits) == 3 and {h.policy_id for h in hits} == {"POL-OT-004"}
    assert index.search("   ") == [] and index.search("tor", k=0) == []


def test_exact_get_and_sections(index: PolicyIndex, corpus: PolicySet) -> None:
    hit = index.get("POL-NET-005", "3-tor")
    assert hit is not None and hit.score == 1.0 and hit.heading == "3. Tor"
    assert hit.text == corpus.get("POL-NET-005").sections["3-tor"][1]
    assert index.get("POL-NET-005", "3-tor", version=1) == hit
    assert index.get("POL-NET-005", "tor") is None  # exact, not the nearest anchor
    assert index.get("POL-NET-005", "3-tor", version=2) is None
    assert index.get("POL-NOPE-999", "3-tor") is None
    got = index.sections("POL-EXC-007")
    assert [p.section for p in got] == list(corpus.get("POL-EXC-007").sections)
    assert index.sections("POL-NOPE-999") == []


# --- persistence, offline operation ---------------------------------------------

_GUARD = """
import json, socket, sys
attempts = []
def _blocked(*a, **k):
    attempts.append(repr(a[1:] if a and isinstance(a[0], socket.socket) else a)[:120])
    raise OSError("network blocked by test")
socket.socket.connect = socket.socket.connect_ex = _blocked
socket.getaddrinfo = socket.create_connection = _blocked
"""

_REOPEN = (
    _GUARD
    + """
import chromadb
from chromadb.config import Settings
import knowledge.embeddings  # registers the embedding function, nothing else
path = sys.argv[1]
# A plain client, no embedding function passed: chroma rebuilds ours from the stored configuration.
col = chromadb.PersistentClient(path=path, settings=Settings(anonymized_telemetry=False)).get_collection("policies")
raw = col.query(query_texts=["is Tor allowed to restricted data"], n_results=1)
conf = col.configuration
from knowledge.index import PolicyIndex
hits = PolicyIndex.open_persistent(path).search("which policy sets the threshold for OT consoles?", k=1)
print(json.dumps({"hit": hits[0].citation, "raw": raw["ids"][0][0], "ef": conf["embedding_function"].name(),
                  "space": conf["hnsw"]["space"], "attempts": attempts}))
"""
)


def test_reopened_in_a_fresh_process_offline(index: PolicyIndex, store: Path) -> None:
    """A new process, new clients on the same path, HF_HUB_OFFLINE unset and every socket refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _REOPEN, str(store)], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"hit": "POL-OT-004 v1 §2-thresholds-for-ot-systems", "raw": "POL-NET-005@v1#3-tor",
                   "ef": EF_NAME, "space": "cosine", "attempts": []}  # fmt: skip


@pytest.mark.parametrize("offline_env", [True, False], ids=["HF_HUB_OFFLINE=1", "unset"])
def test_model_loads_offline_without_touching_the_network(monkeypatch: pytest.MonkeyPatch, offline_env: bool) -> None:
    cached = load_model()
    attempts: list[Any] = []

    def blocked(*a: Any, **k: Any) -> Any:
        attempts.append(a)
        raise OSError("network blocked by test")

    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    monkeypatch.setattr(emb, "_MODELS", {})  # a real load from disk, not the per-process cache
    fresh = load_model()
    assert fresh is not cached and load_model(bundled_model_path()) is fresh  # cached per path from now on
    v = np.array(MiniLMEmbeddingFunction()(["payroll access from an unmanaged laptop"]))
    assert v.shape == (1, emb.DIMENSIONS) and abs(float(np.linalg.norm(v[0])) - 1.0) < 1e-5
    assert np.allclose(v[0], cached.encode("payroll access from an unmanaged laptop", normalize_embeddings=True),
                       atol=1e-5)  # fmt: skip
    assert attempts == []


def test_embedding_function_config_round_trip() -> None:
    ef = MiniLMEmbeddingFunction()
    assert ef.get_config() == {"model": "all-MiniLM-L6-v2", "batch_size": 32}  # no machine-specific path
    assert MiniLMEmbeddingFunction.build_from_config(ef.get_config()).get_config() == ef.get_config()
    assert not ef.is_legacy() and ef.default_space() == "cosine"
    # Registration itself is tested in a fresh process (test_reopened_in_a_fresh_process_offline): within one
    # process chroma also registers the class of any function a collection was created with.
    with pytest.raises(ValueError):
        MiniLMEmbeddingFunction.build_from_config({"model": "text-embedding-3-small"})
    with pytest.raises(ValueError):
        ef.validate_config_update(ef.get_config(), {"model": "other"})


# --- incremental sync and versions ----------------------------------------------


def test_incremental_sync_embeds_only_what_changed(index: PolicyIndex, corpus: PolicySet) -> None:
    ef = CountingEF()
    idx = PolicyIndex(index.client, collection="incremental", embedding_function=ef)
    ps = passages_of(corpus.get("POL-NET-005")) + passages_of(corpus.get("POL-EXC-007"))
    n = len(ps)
    assert idx.sync(ps).model_dump() == {"added": n, "updated": 0, "removed": 0, "unchanged": 0}
    assert ef.texts == n
    assert idx.sync(ps).model_dump() == {"added": 0, "updated": 0, "removed": 0, "unchanged": n}
    assert ef.texts == n  # nothing re-embedded
    edited = [p.model_copy(update={"text": p.text + " Reviewed yearly."}) if p.section == "3-tor" else p for p in ps]
    assert idx.sync(edited).model_dump() == {"added": 0, "updated": 1, "removed": 0, "unchanged": n - 1}
    assert ef.texts == n + 1
    tor = idx.get("POL-NET-005", "3-tor")
    assert tor is not None and tor.text.endswith("Reviewed yearly.")
    shorter = [p for p in edited if p.section != "6-vpn-and-travel"]
    assert idx.sync(shorter).model_dump() == {"added": 0, "updated": 0, "removed": 1, "unchanged": n - 1}
    assert idx.get("POL-NET-005", "6-vpn-and-travel") is None and idx.count() == n - 1
    only_exc = [p for p in shorter if p.policy_id == "POL-EXC-007"]
    assert idx.sync(only_exc).unchanged == len(only_exc) and idx.count() == n - 1  # other policies untouched
    with pytest.raises(ValueError, match="duplicate"):
        idx.sync([ps[0], ps[0]])
    with pytest.raises(ValidationError):
        Passage(**ps[0].model_dump(exclude={"citation"}) | {"version": 0})


def test_new_version_is_searched_old_one_still_cited(index: PolicyIndex, corpus: PolicySet) -> None:
    ef = CountingEF()
    idx = PolicyIndex(index.client, collection="versions", embedding_function=ef)
    v1 = passages_of(corpus.get("POL-ACCESS-001"))
    idx.sync(v1 + passages_of(corpus.get("POL-OT-004")))
    new = corpus.with_thresholds(policy_id="POL-ACCESS-001", scope="tier:confidential", step_up_at=0.3, deny_at=0.7)
    v2 = passages_of(new.get("POL-ACCESS-001"))
    assert idx.sync(v2).model_dump() == {"added": len(v2), "updated": 0, "removed": 0, "unchanged": 0}

    hits = idx.search("what are the thresholds for confidential data?", k=6)
    assert hits[0].citation == "POL-ACCESS-001 v2 §5-confidential-tier" and "**0.30**" in hits[0].text
    assert {h.version for h in hits if h.policy_id == "POL-ACCESS-001"} == {2}
    assert {h.version for h in idx.search("confidential tier thresholds", k=10, latest_only=False)} == {1, 2}

    now, then = idx.get("POL-ACCESS-001", "5-confidential-tier"), idx.get("POL-ACCESS-001", "5-confidential-tier", 1)
    assert now is not None and then is not None
    assert (now.version, then.version) == (2, 1) and "**0.40**" in then.text and "**0.30**" in now.text
    assert {p.version for p in idx.sections("POL-ACCESS-001")} == {2}
    assert [p.section for p in idx.sections("POL-ACCESS-001", version=1)] == [p.section for p in v1]

    before = ef.texts
    assert idx.sync(v1).unchanged == len(v1) and ef.texts == before  # re-syncing v1 does not make it latest again
    assert idx.get("POL-ACCESS-001", "5-confidential-tier") == now
    assert idx.search("confidential tier thresholds", k=1)[0].version == 2


# --- a chroma server --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        pytest.skip("the chroma server CLI is not installed")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen([str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the chroma server did not start")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_chroma_server_round_trip(chroma_url: str, corpus: PolicySet) -> None:
    idx = PolicyIndex.open_http(chroma_url)
    ps = passages_of(corpus.get("POL-NET-005"))
    assert idx.sync(ps).added == len(ps)
    assert idx.search("is Tor allowed to restricted data", k=1)[0].citation == "POL-NET-005 v1 §3-tor"
    again = PolicyIndex.open_http(chroma_url + "/")
    assert again.sync(ps).unchanged == len(ps)
    port = int(chroma_url.rsplit(":", 1)[1])
    col = chromadb.HttpClient(
        host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)
    ).get_collection("policies")
    assert col.query(query_texts=["impossible travel"], n_results=1)["ids"][0] == ["POL-NET-005@v1#5-impossible-travel"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:8000", "127.0.0.1:8000", "http://127.0.0.1:8000/chroma", "http://"])
def test_bad_chroma_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        PolicyIndex.open_http(url)
