"""Commands of the agent and the control loop: ask, proposals, approve, reject."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from integrations.cli.base import _dump, _fail, _principal_or_fail, _rt, app
from integrations.runtime import Runtime


@app.command()
def ask(question: str, as_json: Annotated[bool, typer.Option("--json")] = False,
        as_: Annotated[str, typer.Option("--as", help="who is asking (recorded as requester of any proposal)")] = "ana",
        audience: Annotated[str, typer.Option(help="analyst, ticket or auditor")] = "analyst",
        thread: Annotated[str | None, typer.Option(help="continue a conversation thread")] = None) -> None:
    """Ask the agent about decisions, sessions, policies or thresholds; answers are grounded and verified."""
    from agent.narrative import Audience
    from integrations.actions import ask as ask_agent

    if audience not in {a.value for a in Audience}:
        _fail(f"--audience must be one of {', '.join(a.value for a in Audience)}", 2)
    rt = _rt()
    out = ask_agent(rt, question=question, asked_by=as_, audience=Audience(audience), thread_id=thread)
    if as_json:
        _dump(out)
        return
    typer.echo(out["answer"])
    if out["citations"]:
        typer.echo("\nsources: " + "; ".join(f"{c['policy_id']} v{c['version']} §{c['section']}" for c in out["citations"]))
    if out["proposal"]:
        p = out["proposal"]
        typer.echo(f"\nproposal {p['proposal_id']} ({p['kind']}) is {p['status']}; it needs {p['approvals_needed']} "
                   f"approval(s): glassgate approve {p['proposal_id']} --as <approver>")
    if not out["verified"]:
        typer.echo("\nWARNING: this answer failed verification: "
                   + "; ".join(f["detail"] for f in out["verification_failures"]))


def _proposals_rt() -> tuple[Runtime, Any]:
    from agent.proposals import expire_due

    rt = _rt()
    with rt.sessions.begin() as s:
        expire_due(s, ledger=rt.ledger, clock=rt.clock)
    return rt, rt.approval_rules


@app.command()
def proposals(as_json: Annotated[bool, typer.Option("--json")] = False,
              status: Annotated[str | None, typer.Option(help="pending, approved, applied, failed, rejected, expired")] = None) -> None:
    """List proposals with their status and approvals."""
    from agent.approval import Status
    from agent.proposals import list_proposals

    if status is not None and status not in {x.value for x in Status}:
        _fail(f"--status must be one of {', '.join(x.value for x in Status)}", 2)
    rt, rules = _proposals_rt()
    with rt.sessions() as s:
        recs = list_proposals(s, rules=rules, status=Status(status) if status else None)
    if as_json:
        _dump([r.model_dump(mode="json") for r in recs])
        return
    if not recs:
        typer.echo("no proposals")
    for r in recs:
        got = sum(1 for a in r.approvals if a["decision"] == "approve")
        typer.echo(f"{r.proposal_id}  {r.kind:<16} {r.status:<8} by {r.requested_by:<8} approvals {got}/"
                   f"{r.approvals_needed}  expires {r.expires_at}  {json.dumps(r.payload, sort_keys=True)}")


def _decide_cli(proposal_id: str, who: str, approve: bool, reason: str | None) -> None:
    from agent.approval import ApprovalError, Channel
    from integrations.actions import decide_proposal

    rt = _rt()
    principal = _principal_or_fail(rt, who)
    try:
        rec = decide_proposal(rt, proposal_id=proposal_id, principal=principal, approve=approve,
                              channel=Channel.CLI, reason=reason)
    except ApprovalError as exc:
        _fail(str(exc))
    _report_decision(rec, as_json=False)


def _report_decision(rec: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        _dump(rec)
        return
    got = sum(1 for a in rec["approvals"] if a["decision"] == "approve")
    line = f"{rec['proposal_id']} is now {rec['status']} ({got}/{rec['approvals_needed']} approvals)"
    if rec.get("result"):
        line += f": {json.dumps(rec['result'], sort_keys=True)}"
    typer.echo(line)


@app.command()
def approve(proposal_id: str, as_: Annotated[str, typer.Option("--as", help="the approving principal")],
            reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Approve a proposal as a configured principal; the action runs once the approvals it needs are in."""
    _decide_cli(proposal_id, as_, True, reason)


@app.command()
def reject(proposal_id: str, as_: Annotated[str, typer.Option("--as", help="the rejecting principal")],
           reason: Annotated[str, typer.Option(help="why (recorded)")]) -> None:
    """Reject a proposal as a configured principal."""
    _decide_cli(proposal_id, as_, False, reason)
