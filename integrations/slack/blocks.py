"""Block Kit rendering: pure functions from the agent's answer, tool outputs and proposal records to blocks.

Everything shown comes from the answer's claims and the decision record the tools return; nothing is
computed here. Every dynamic string is escaped for Slack's mrkdwn (``&``, ``<``, ``>``), so text from an
event (a user agent, a reason typed into a modal) cannot mention a channel, link or format anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from risk.timeline import VERB, Timeline
from tools.decisions import GetDecisionOutput

# action_ids and the modal's callback_id: the listeners in integrations.slack.listeners match on these
CONFIRM_DENIAL = "gg_confirm_denial"
REQUEST_EXCEPTION = "gg_request_exception"
SHOW_TIMELINE = "gg_show_timeline"
APPROVE = "gg_approve"
REJECT = "gg_reject"
EXCEPTION_MODAL = "gg_exception_modal"
# the modal's input blocks (block ids: a validation error names one of these)
RESOURCE, DURATION, REASON = "resource", "duration", "reason"

SECTION_MAX = 3000  # Slack's limit on a section's text
MAX_BLOCKS = 50


def esc(text: object) -> str:
    """Escape text for mrkdwn: it is shown, never interpreted (no mentions, links or channel pings)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = SECTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text)}]}


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action_id,
                         "value": value}
    if style:
        b["style"] = style
    return b


def _points(p: float | None) -> str:
    return "" if p is None else f" ({p:+.2f})"


def answer_blocks(answer: dict[str, Any], got: GetDecisionOutput | None) -> list[dict[str, Any]]:
    """The agent's answer as blocks: outcome and risk against the threshold, top drivers, what changed in
    the session, the cited policy passage, what would have changed the outcome, the verified narrative,
    and the buttons for the decision it is about (``got``: that decision from the get_decision tool)."""
    if got is None:
        return [section(esc(answer["answer"])), context(_verified(answer))]
    d, ex = got.decision, got.explanation
    claims = [c for c in answer["claims"] if c["subject"] == d.decision_id]
    labels = {f.feature: f.label for f in ex.factors}
    of = _claims_of(claims)
    outcome = next((c["value"] for c in of("outcome")), d.outcome)
    risk = next((c["value"] for c in of("risk")), None)
    threshold = next((c["value"] for c in of("threshold")), None)
    head = (f"*{esc(d.user_id)}* was *{esc(VERB.get(str(outcome), outcome))}* on *{esc(d.resource_id)}* at "
            f"{esc(d.timestamp[:16].replace('T', ' '))} UTC (`{esc(d.decision_id)}`)")
    blocks: list[dict[str, Any]] = [section(head)]
    fields = [f"*Outcome*\n{esc(outcome)}"]
    if ex.decided_by != "threshold":  # a rule, an exception or a revocation set it: say so before the model
        fields.append(f"*Decided by*\n{esc(ex.decided_kind)} `{esc(ex.decided_by)}` (the risk is context)")
    if risk is not None:
        against = f" (threshold {float(threshold):.2f})" if threshold is not None else ""
        fields.append(f"*Risk*\n{float(risk):.2f}{against}; step-up at {d.step_up_at:.2f}, deny at {d.deny_at:.2f}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    drivers = [f"• {esc(labels.get(c['feature'] or '', c['feature']))}: {esc(c['value'])}{_points(c['points'])}"
               for c in of("driver")]
    if drivers:
        title = "*Top drivers*" if ex.decided_by == "threshold" else "*Top drivers of the risk (context)*"
        blocks.append(section(title + "\n" + "\n".join(drivers)))
    changes = [f"• {esc(labels.get(c['feature'] or '', c['feature']))} now {esc(c['value'])}{_points(c['points'])}"
               for c in of("change")]
    if changes:
        blocks.append(section(f"*What changed in session* `{esc(d.session_id)}`\n" + "\n".join(changes)))
    for c in [c for c in of("policy") if c.get("citation")][:2]:
        cit = c["citation"]
        quote = "\n".join("> " + esc(line) for line in _clip(cit["text"], 600).splitlines() if line.strip())
        blocks.append(section(f"*Policy* {esc(cit['heading'])} ({esc(cit['policy_id'])} v{cit['version']} "
                              f"§{esc(cit['section'])})\n{quote}"))
    rules = [f"• `{esc(c['value'])}` ({esc(c['citation']['policy_id'])} v{c['citation']['version']} "
             f"§{esc(c['citation']['section'])})" for c in of("rule") if c.get("citation")]
    if rules:
        blocks.append(section("*Rules applied*\n" + "\n".join(rules)))
    flips = _counterfactuals(of("counterfactual"), got)
    if flips:
        blocks.append(section("*What would have changed the outcome*\n" + "\n".join(flips)))
    blocks.append(section("*The full explanation*\n" + esc(answer["answer"])))
    blocks.append(context(_verified(answer)))
    buttons = [button("Show timeline", SHOW_TIMELINE, d.decision_id)]
    if d.outcome != "allow":
        confirm = "Confirm denial" if d.outcome == "deny" else "Confirm step-up"  # both: POL-EXC-007 confirm_denial
        buttons = [button(confirm, CONFIRM_DENIAL, d.decision_id, "danger"),
                   button("Request exception", REQUEST_EXCEPTION, d.decision_id, "primary"), *buttons]
    blocks.append({"type": "actions", "block_id": "decision_actions", "elements": buttons})
    return blocks


def _claims_of(claims: list[dict[str, Any]]) -> Any:
    return lambda kind: [c for c in claims if c["type"] == kind]


def _verified(answer: dict[str, Any]) -> str:
    mark = "verified against the evidence" if answer.get("verified") else "NOT verified against the evidence"
    return f"{esc(answer.get('narrator', ''))} narrator, {mark}"


def _counterfactuals(claims: Iterable[dict[str, Any]], got: GetDecisionOutput) -> list[str]:
    """Each counterfactual claim, with the action labels of the explanation's matching counterfactual."""
    out = []
    for c in claims:
        keys = (c.get("feature") or "").split(",")
        cf = next((x for x in got.explanation.counterfactuals if [a.action for a in x.actions] == keys), None)
        if cf is None:
            out.append(f"• it would have been {esc(c['value'])} had {esc(', '.join(keys))}")
            continue
        what = " and ".join(esc(a.label) for a in cf.actions)
        out.append(f"• {esc(VERB.get(cf.outcome_after, cf.outcome_after))} (risk {cf.risk_after:.2f}, re-scored) "
                   f"had the user been able to {what}")
    return out


def proposal_blocks(rec: dict[str, Any], *, cite: str, notify: list[str]) -> list[dict[str, Any]]:
    """A proposal for its deciders: what, why (the evidence), status, and Approve / Reject while pending."""
    pid, kind, status = rec["proposal_id"], rec["kind"], rec["status"]
    payload = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in rec["payload"].items())
    blocks = [section(f"*Proposal* `{esc(pid)}`: *{esc(kind)}* requested by {esc(rec['requested_by'])}\n{payload}"),
              section("*Evidence*\n" + _evidence(rec["evidence"]))]
    approvals = rec.get("approvals") or []
    lines = [f"*Status*: {esc(status)} ({sum(a['decision'] == 'approve' for a in approvals)}/"
             f"{rec['approvals_needed']} approvals; rules: {esc(cite)})"]
    lines += [f"• {esc(a['decision'])}d by {esc(a['principal'])} via {esc(a['channel'])} at {esc(a['at'])}"
              for a in approvals]
    if rec.get("result"):
        lines.append("*Result*: " + esc(json.dumps(rec["result"], sort_keys=True))[:1500])
    blocks.append(section("\n".join(lines)))
    if status == "pending":
        who = " ".join(f"<@{u}>" for u in notify)  # Slack ids from the principals file, not from any message
        blocks.append(context(f"Expires {esc(rec['expires_at'])}." + (f" For: {who}" if who else "")))
        blocks.append({"type": "actions", "block_id": "proposal_actions",
                       "elements": [button("Approve", APPROVE, pid, "primary"), button("Reject", REJECT, pid, "danger")]})
    return blocks


def _evidence(evidence: dict[str, Any]) -> str:
    if not evidence:
        return "(none recorded)"
    lines = [f"• {esc(k)}: {esc(v if isinstance(v, str) else json.dumps(v, sort_keys=True))[:400]}"
             for k, v in evidence.items()]
    return _clip("\n".join(lines), 2500)


def timeline_blocks(tl: Timeline) -> list[dict[str, Any]]:
    """A session's timeline: one line per decision, with the signals that moved the most."""
    lines = []
    for st in tl.steps[-25:]:
        moved = "; ".join(f"{esc(c.label)} {esc(c.before)} → {esc(c.after)} ({c.points_delta:+.2f})"
                          for c in st.changes[:3])
        flag = " *outcome changed*" if st.outcome_changed else ""
        lines.append(f"• `{esc(st.decision_id)}` {esc(st.summary)}{flag}" + (f": {moved}" if moved else ""))
    head = f"*Session* `{esc(tl.session_id)}` ({esc(tl.user_id)}), {len(tl.steps)} decisions"
    if len(tl.steps) > 25:
        head += " (the last 25 shown)"
    return [section(head), *[section(chunk) for chunk in _chunks(lines)]][:MAX_BLOCKS]


def _chunks(lines: list[str], limit: int = SECTION_MAX) -> list[str]:
    out, cur = [], ""
    for line in lines:
        line = _clip(line, limit)
        if cur and len(cur) + 1 + len(line) > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n{line}" if cur else line
    return [*out, cur] if cur else out


def exception_modal(got: GetDecisionOutput, *, max_hours: float | None, private_metadata: str) -> dict[str, Any]:
    """The Request exception modal: resource, duration (hours) and reason, for the decision's user."""
    d = got.decision
    hint = f"Hours, at most {max_hours:g}." if max_hours is not None else "Hours."

    def text_input(block_id: str, label: str, initial: str | None, *, multiline: bool = False,
                   hint_text: str | None = None) -> dict[str, Any]:
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline}
        if initial is not None:
            element["initial_value"] = initial
        block: dict[str, Any] = {"type": "input", "block_id": block_id, "element": element,
                                 "label": {"type": "plain_text", "text": label}}
        if hint_text:
            block["hint"] = {"type": "plain_text", "text": hint_text}
        return block

    return {"type": "modal", "callback_id": EXCEPTION_MODAL, "private_metadata": private_metadata,
            "title": {"type": "plain_text", "text": "Request exception"},
            "submit": {"type": "plain_text", "text": "Request"}, "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [section(f"A time-boxed exception for *{esc(d.user_id)}* after `{esc(d.decision_id)}` "
                               f"({esc(VERB.get(d.outcome, d.outcome))}, risk {d.risk:.2f}). A policy owner must "
                               "approve it before it takes effect."),
                       text_input(RESOURCE, "Resource", d.resource_id),
                       text_input(DURATION, "Duration (hours)", "8", hint_text=hint),
                       text_input(REASON, "Reason", None, multiline=True)]}
