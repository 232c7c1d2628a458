"""Commands of the agent and the control loop: ask, proposals, approve, reject.

Each is a thin adapter over one service function (``integrations.services.ask`` / ``.proposals``); who
the command acts as comes from :mod:`integrations.cli.identity` (a token, or an explicit local operator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from integrations.cli.base import _dump, _fail, _rt, app
from integrations.cli.identity import CliIdentity, IdentityError, resolve
from integrations.runtime import Runtime

AsOpt = Annotated[str | None, typer.Option("--as", help="the principal you act as (must match the token, or "
                                                         "needs --local-operator)")]
TokenFileOpt = Annotated[Path | None, typer.Option("--token-file", help="a file holding your bearer token "
                                                                        "(else GLASSGATE_TOKEN)")]
LocalOpt = Annotated[bool, typer.Option("--local-operator", help="act for --as without a token, recorded as a "
                                                                 "local operator")]


def _identity(rt: Runtime, as_: str | None, token_file: Path | None, local_operator: bool) -> CliIdentity:
    try:
        return resolve(rt, as_=as_, token_file=token_file, local_operator=local_operator)
    except IdentityError as exc:
        _fail(str(exc), 2)


def _services(rt: Runtime) -> Any:
    from integrations.services.deps import ServiceDeps

    return ServiceDeps.from_runtime(rt)


@app.command()
def ask(question: str, as_json: Annotated[bool, typer.Option("--json")] = False, as_: AsOpt = None,
        token_file: TokenFileOpt = None, local_operator: LocalOpt = False,
        audience: Annotated[str, typer.Option(help="analyst, ticket or auditor")] = "analyst",
        thread: Annotated[str | None, typer.Option(help="continue a conversation thread")] = None) -> None:
    """Ask the agent about decisions, sessions, policies or thresholds; answers are grounded and verified."""
    from agent.narrative import Audience
    from integrations.services.ask import AskOwnerMismatch, ThreadBusy
    from integrations.services.ask import ask as ask_agent

    if audience not in {a.value for a in Audience}:
        _fail(f"--audience must be one of {', '.join(a.value for a in Audience)}", 2)
    rt = _rt()
    who = _identity(rt, as_, token_file, local_operator)
    try:
        out = ask_agent(deps=_services(rt), question=question, asked_by=who.principal.id, audience=Audience(audience),
                        thread_id=thread)
    except (AskOwnerMismatch, ThreadBusy) as exc:
        _fail(f"thread {exc}: {'started by another principal' if isinstance(exc, AskOwnerMismatch) else 'busy'}", 2)
    if as_json:
        _dump(out)
        return
    typer.echo(out["answer"])
    if out["citations"]:
        typer.echo("\nsources: " + "; ".join(f"{c['policy_id']} v{c['version']} §{c['section']}" for c in out["citations"]))
    if out["proposal"]:
        p = out["proposal"]
        typer.echo(f"\nproposal {p['proposal_id']} ({p['kind']}) is {p['status']}; it needs {p['approvals_needed']} "
                   f"approval(s): glassgate approve {p['proposal_id']} (with the approver's token)")
    if not out["verified"]:
        typer.echo("\nWARNING: this answer failed verification: "
                   + "; ".join(f["detail"] for f in out["verification_failures"]))


@app.command()
def proposals(as_json: Annotated[bool, typer.Option("--json")] = False,
              status: Annotated[str | None, typer.Option(help="pending, approved, applied, failed, rejected, expired")] = None) -> None:
    """List proposals with their status and approvals."""
    from agent.approval import Status
    from integrations.services.proposals import list_proposals

    if status is not None and status not in {x.value for x in Status}:
        _fail(f"--status must be one of {', '.join(x.value for x in Status)}", 2)
    recs = list_proposals(deps=_services(_rt()), status=Status(status) if status else None)
    if as_json:
        _dump([r.model_dump(mode="json") for r in recs])
        return
    if not recs:
        typer.echo("no proposals")
    for r in recs:
        got = sum(1 for a in r.approvals if a["decision"] == "approve")
        typer.echo(f"{r.proposal_id}  {r.kind:<16} {r.status:<8} by {r.requested_by:<8} approvals {got}/"
                   f"{r.approvals_needed}  expires {r.expires_at}  {json.dumps(r.payload, sort_keys=True)}")


def _decide_cli(proposal_id: str, who_: tuple[str | None, Path | None, bool], approve: bool, reason: str | None) -> None:
    from agent.approval import Channel
    from integrations.services.proposals import Outcome, decide

    rt = _rt()
    who = _identity(rt, *who_)
    got = decide(deps=_services(rt), proposal_id=proposal_id, principal=who.principal, approve=approve,
                 channel=Channel.CLI, reason=reason, attestation=who.attestation)
    if got.outcome is Outcome.REFUSED:
        _fail(got.message or str(got.refusal))
    assert got.proposal is not None
    _report_decision(got.proposal.model_dump(mode="json"), as_json=False)


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
def approve(proposal_id: str, as_: AsOpt = None, token_file: TokenFileOpt = None, local_operator: LocalOpt = False,
            reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Approve a proposal as the principal of your token; the action runs once the approvals it needs are in."""
    _decide_cli(proposal_id, (as_, token_file, local_operator), True, reason)


@app.command()
def reject(proposal_id: str, reason: Annotated[str, typer.Option(help="why (recorded)")], as_: AsOpt = None,
           token_file: TokenFileOpt = None, local_operator: LocalOpt = False) -> None:
    """Reject a proposal as the principal of your token."""
    _decide_cli(proposal_id, (as_, token_file, local_operator), False, reason)
