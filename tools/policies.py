"""Policy tools: semantic search over the policy corpus, and exact lookup of a section.

The bridge between the two peer packages lives here: :mod:`risk.policy` parses the
documents the engine evaluates, :mod:`knowledge.index` retrieves their passages.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from knowledge.index import Passage, SyncReport
from risk.policy import PolicyDoc, PolicySet, parse_policy
from risk.store.control import PolicyVersionRow
from risk.store.policies import version_text
from tools.context import ToolContext
from tools.errors import ToolNotFound, ToolUnavailable
from tools.records import ToolInput


class PolicyPassage(BaseModel):
    policy_id: str
    version: int
    section: str = Field(description="The section's anchor, as cited: POL-X v1 §<section>.")
    heading: str
    title: str
    text: str
    score: float | None = Field(default=None, description="Cosine similarity to the query (search only).")


class SearchPoliciesInput(ToolInput):
    query: str = Field(min_length=3, max_length=500, description="What the passage should be about, in plain words.")
    k: int = Field(default=5, ge=1, le=20, description="How many passages.")
    policy_id: str | None = Field(default=None, description="Only passages of this policy.")


class SearchPoliciesOutput(BaseModel):
    passages: list[PolicyPassage]


class GetPolicySectionInput(ToolInput):
    policy_id: str = Field(description="The policy id, e.g. POL-ACCESS-001.")
    section: str = Field(description="The section anchor, e.g. 6-restricted-tier.")
    version: int | None = Field(default=None, ge=1, description="A specific version (default: the one in force).")


def passages_of(doc: PolicyDoc) -> list[Passage]:
    return [Passage(policy_id=doc.id, version=doc.version, section=anchor, heading=heading, text=text, title=doc.title)
            for anchor, (heading, text) in doc.sections.items()]


def sync_index(index: object, s: Session, policy: PolicySet) -> SyncReport:
    """Index every section of every policy version in force or approved (incremental by content hash)."""
    passages = [p for doc in policy.docs for p in passages_of(doc)]
    for row in s.query(PolicyVersionRow).all():
        passages += passages_of(parse_policy(row.text, f"{row.policy_id}.md"))
    return index.sync(passages)  # type: ignore[attr-defined]


def search_policies(ctx: ToolContext, args: SearchPoliciesInput) -> SearchPoliciesOutput:
    """Find the policy passages most relevant to a question (e.g. "which policy sets the OT threshold?",
    "how long may an exception last?"). Use it when the question is about what a policy says."""
    if ctx.index is None:
        raise ToolUnavailable("search_policies needs the policy index; none is configured")
    hits = ctx.index.search(args.query, k=args.k, policy_id=args.policy_id)
    return SearchPoliciesOutput(passages=[PolicyPassage(policy_id=h.policy_id, version=h.version, section=h.section,
                                                        heading=h.heading, title=h.title, text=h.text, score=h.score)
                                          for h in hits])


def get_policy_section(ctx: ToolContext, args: GetPolicySectionInput) -> PolicyPassage:
    """Fetch one policy section exactly, by policy id and section anchor (and version, for a decision made
    under an older one). Use it to quote the passage a decision cites."""
    with ctx.sessions() as s:
        policy = ctx.policy_in_force(s)
        doc = next((d for d in policy.docs if d.id == args.policy_id), None)
        if doc is not None and args.version not in (None, doc.version):
            text = version_text(s, args.policy_id, args.version)
            doc = parse_policy(text, f"{args.policy_id}.md") if text else (
                next((d for d in ctx.policy.docs if d.id == args.policy_id and d.version == args.version), None))
    if doc is not None and args.section in doc.sections:
        heading, text = doc.sections[args.section]
        return PolicyPassage(policy_id=doc.id, version=doc.version, section=args.section, heading=heading,
                             title=doc.title, text=text)
    if ctx.index is not None:  # a passage only the index holds (e.g. a policy not shipped as a file)
        hit = ctx.index.get(args.policy_id, args.section, args.version)
        if hit is not None:
            return PolicyPassage(policy_id=hit.policy_id, version=hit.version, section=hit.section,
                                 heading=hit.heading, title=hit.title, text=hit.text)
    raise ToolNotFound("policy section", f"{args.policy_id} v{args.version or 'current'} §{args.section}")
