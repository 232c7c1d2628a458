"""Decisions glassgate did not make: finding vendor decisions (Okta, Entra, an OCSF source) scored in shadow,
and how often glassgate disagrees with each vendor rule (with the analysts' verdicts on those decisions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, func, select

from risk.store.schema import DecisionRow, ExplanationRow
from risk.store.vendor import VendorObservationRow
from tools.context import ToolContext
from tools.records import DecisionSummary, TimeFilter, in_window, latest_verdicts, summary_of

VendorName = Literal["okta", "entra", "ocsf"]
VendorOutcomeName = Literal["allow", "challenge", "deny"]
AgreementName = Literal["agree", "disagree", "not_comparable"]


class FindVendorDecisionsInput(TimeFilter):
    vendor: VendorName | None = Field(default=None, description="Only this vendor's decisions.")
    user_id: str | None = Field(default=None, description="Only this user's (exact id, e.g. alice@example.com).")
    vendor_outcome: VendorOutcomeName | None = Field(default=None, description="Only what the vendor decided so.")
    agreement: AgreementName | None = Field(default=None, description="Only where glassgate agreed, or disagreed.")
    limit: int = Field(default=20, ge=1, le=200, description="At most this many, newest first.")


class VendorDecision(BaseModel):
    vendor: VendorName
    vendor_event_id: str
    vendor_outcome: VendorOutcomeName
    vendor_rule: str
    agreement: AgreementName
    shadow: DecisionSummary = Field(description="glassgate's own decision of the same event, in shadow")


class FindVendorDecisionsOutput(BaseModel):
    total: int
    decisions: list[VendorDecision]


def find_vendor_decisions(ctx: ToolContext, args: FindVendorDecisionsInput) -> FindVendorDecisionsOutput:
    """Find decisions an existing IAM (Okta, Entra, an OCSF source) made, by vendor, user, the vendor's outcome,
    agreement with glassgate and time; use it for "why did Okta deny alice?" before get_decision."""
    conds: list[ColumnElement[bool]] = in_window(args.window(now=ctx.now(), tz=ctx.tz))
    for column, value in ((VendorObservationRow.vendor, args.vendor), (VendorObservationRow.user_id, args.user_id),
                          (VendorObservationRow.outcome, args.vendor_outcome),
                          (VendorObservationRow.agreement, args.agreement)):
        if value is not None:
            conds.append(column == value)
    q = (select(VendorObservationRow, DecisionRow, ExplanationRow.top_family, ExplanationRow.body)
         .join(DecisionRow, DecisionRow.decision_id == VendorObservationRow.decision_id)
         .join(ExplanationRow, ExplanationRow.decision_id == DecisionRow.decision_id).where(*conds))
    with ctx.sessions() as s:
        total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
        rows = s.execute(q.order_by(DecisionRow.ts_ms.desc(), DecisionRow.seq.desc()).limit(args.limit)).all()
        return FindVendorDecisionsOutput(total=total, decisions=[VendorDecision(
            vendor=o.vendor, vendor_event_id=o.vendor_event_id, vendor_outcome=o.outcome, vendor_rule=o.rule,
            agreement=o.agreement, shadow=summary_of(d, fam, body)) for o, d, fam, body in rows])


class VendorRuleStatsInput(TimeFilter):
    vendor: VendorName = Field(description="Whose rules.")


class VendorRuleStat(BaseModel):
    rule: str = Field(description="the vendor's policy or rule that decided (empty: none named)")
    decisions: int
    restrictive: int = Field(description="challenged or denied by the vendor")
    disagreements: int = Field(description="glassgate's shadow outcome stood the other way")
    restrictive_no_risk: int = Field(description="restrictive where glassgate saw no elevated risk")
    verdicts: int = Field(description="restrictive decisions with an analyst verdict")
    benign: int = Field(description="of those, judged benign")
    benign_share: float | None = Field(description="benign / verdicts, None without verdicts")


class VendorRuleStatsOutput(BaseModel):
    vendor: VendorName
    rules: list[VendorRuleStat]


def vendor_rule_stats(ctx: ToolContext, args: VendorRuleStatsInput) -> VendorRuleStatsOutput:
    """Per vendor rule: how many decisions, how many glassgate disagrees with, and how many of its blocks and
    challenges analysts judged benign; use it for "is Okta's rule X too strict?"."""
    conds = [VendorObservationRow.vendor == args.vendor, *in_window(args.window(now=ctx.now(), tz=ctx.tz))]
    with ctx.sessions() as s:
        rows = s.execute(select(VendorObservationRow.decision_id, VendorObservationRow.rule,
                                VendorObservationRow.outcome, VendorObservationRow.agreement, DecisionRow.outcome)
                         .join(DecisionRow, DecisionRow.decision_id == VendorObservationRow.decision_id)
                         .where(*conds)).all()
        verdicts = latest_verdicts(s, [r[0] for r in rows if r[2] != "allow"])
    stats: dict[str, dict[str, int]] = {}
    for did, rule, vout, agree, gout in rows:
        st = stats.setdefault(rule, {"decisions": 0, "restrictive": 0, "disagreements": 0, "restrictive_no_risk": 0,
                                     "verdicts": 0, "benign": 0})
        st["decisions"] += 1
        st["disagreements"] += agree == "disagree"
        if vout != "allow":
            st["restrictive"] += 1
            st["restrictive_no_risk"] += gout == "allow" and agree == "disagree"
            v = verdicts.get(did)
            if v is not None:
                st["verdicts"] += 1
                st["benign"] += v.verdict == "benign"
    out = [VendorRuleStat(rule=r, **st, benign_share=round(st["benign"] / st["verdicts"], 4) if st["verdicts"] else None)
           for r, st in stats.items()]
    out.sort(key=lambda x: (-x.disagreements, -x.decisions, x.rule))
    return VendorRuleStatsOutput(vendor=args.vendor, rules=out)
