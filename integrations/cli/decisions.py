"""Commands over decisions: train, score, explain, timeline, replay, verdict, audit verify."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from integrations import jsonbounds, render
from integrations.cli.base import _dump, _fail, _progress, _rt, app, audit_app, err
from integrations.runtime import Runtime
from risk.engine import Rejected
from risk.model import ModelNotFoundError


@app.command()
def train(users: int = 300, days: int = 28, seed: int = 7, test_days: int = 7,
          from_store: Annotated[bool, typer.Option("--from-store", help="train a candidate on the stored decisions "
                                                   "and analyst verdicts and start it in shadow")] = False) -> None:
    """Generate the synthetic world, train the risk model on its earlier days and card it on the later days."""
    from risk.synth import generate_world, world_start_for
    from risk.training import train_on_world

    rt = _rt()
    if from_store:
        from integrations.services.deps import ServiceDeps
        from integrations.services.models import train_from_store

        with _progress() as prog:
            prog.add_task("training a candidate on the store's verdicts (and the synthetic prior)", total=None)
            got = train_from_store(deps=ServiceDeps.from_runtime(rt), seed=seed)
        _dump(got.model_dump(mode="json"))
        return
    with _progress() as prog:
        t = prog.add_task("generating world", total=1)
        world = generate_world(users=users, days=days, seed=seed, start=world_start_for(rt.clock(), days))
        prog.update(t, completed=1)
        t = prog.add_task("training (trees)", total=100)
        model, _, _ = train_on_world(world, rt.policy, test_days=test_days,
                                     progress=lambda s, f: prog.update(t, completed=int(f * 100)) if s == "trees" else None)
    path = rt.save_model(model)
    m = model.card["test_metrics"]
    err.print(f"model {model.version} saved to {path}: ROC-AUC {m['roc_auc']:.4f}, PR-AUC {m['pr_auc']:.4f}, "
              f"top family = cause for {m['top_family_is_cause']:.1%} of attack events")


def _lines(source: str) -> Iterator[tuple[int, Any]]:
    fh = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    with fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield n, _BadJson(f"line is not UTF-8: invalid byte at column {exc.start + 1}")
                continue
            if not line.strip():
                continue
            try:
                yield n, jsonbounds.loads(line)
            except jsonbounds.JsonBoundsError as exc:
                yield n, _BadJson(f"line is refused: {exc}")
            except json.JSONDecodeError as exc:
                yield n, _BadJson(f"line is not JSON: {exc.msg} at column {exc.colno}")


class _BadJson:
    def __init__(self, message: str):
        self.message = message


@app.command()
def score(source: Annotated[str, typer.Argument(help="JSON-lines file of native events, or - for stdin")]) -> None:
    """Decide each event: one JSON result line per input line; invalid lines get an error line and store nothing."""
    if source != "-" and not Path(source).is_file():
        _fail(f"no such file: {source}")
    rt = _rt()
    try:
        engine = rt.engine
    except ModelNotFoundError as exc:
        _fail(str(exc))
    failures = 0
    batch: list[tuple[int, Any]] = []

    def flush() -> None:
        nonlocal failures
        for (n, _), res in zip(batch, engine.score_many([raw for _, raw in batch]), strict=True):
            if isinstance(res, Rejected):
                failures += 1
                _dump(res.as_json(n))
            else:
                _dump({"decision": res.decision, "explanation": res.explanation, "created": res.created})
        batch.clear()

    for n, raw in _lines(source):
        if isinstance(raw, _BadJson):
            flush()
            failures += 1
            _dump({"error": {"line": n, "fields": [], "message": raw.message}})
            continue
        batch.append((n, raw))
        if len(batch) >= 200:
            flush()
    flush()
    engine.checkpoint()
    if failures:
        err.print(f"{failures} line(s) rejected; nothing was stored for them")
        raise typer.Exit(1)


def _tool(rt: Runtime, name: str, args: dict[str, Any]) -> Any:
    """Call a registry tool (the path every channel reads facts through); refusals fail the command."""
    from tools.registry import ToolInputError, ToolNotFound, call_tool

    try:
        return call_tool(rt.tool_context(with_index=False), name, args)
    except ToolNotFound as exc:
        _fail(f"no {exc.kind} {exc.key!r}")
    except ToolInputError as exc:
        _fail("; ".join(f"{p.field}: {p.message}" for p in exc.problems), 2)


@app.command()
def explain(decision_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Why a decision came out as it did: drivers, thresholds and rules, what would change it."""
    rt = _rt()
    got = _tool(rt, "get_decision", {"decision_id": decision_id})
    rec, body = got.decision.model_dump(mode="json"), got.explanation.model_dump(mode="json")
    observed = got.observed  # a vendor's decision, scored by glassgate in shadow
    if as_json:
        _dump({"decision": rec, "explanation": body, "event": got.event, **({"observed": observed} if observed else {})})
    elif observed:  # the verified narrative: the vendor's decision, its reasons and whether glassgate agrees
        from agent.narrative import Audience
        from integrations.services.ask import explain_decision
        from integrations.services.deps import ServiceDeps

        story = explain_decision(deps=ServiceDeps.from_runtime(rt), decision_id=decision_id, audience=Audience.ANALYST)
        typer.echo(story.text + ("" if story.verified else "\n(not verified)"))
    else:
        typer.echo(render.explanation_text(rec, body))


@app.command()
def timeline(session_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What changed in a session, decision by decision."""
    t = _tool(_rt(), "session_timeline", {"session_id": session_id})
    if as_json:
        _dump(t.model_dump())
    else:
        typer.echo(render.timeline_text(t.model_dump()))


@app.command()
def replay(policy: Annotated[str, typer.Option("--policy")],
           deny_at: Annotated[float, typer.Option("--deny-at")],
           tier: Annotated[str | None, typer.Option("--tier")] = None,
           kind: Annotated[str | None, typer.Option("--kind")] = None,
           step_up_at: Annotated[float | None, typer.Option("--step-up-at")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Replay a threshold change over every stored decision that the policy's scope governs."""
    if (tier is None) == (kind is None):
        _fail("give exactly one of --tier or --kind", 2)
    scope = f"tier:{tier}" if tier else f"kind:{kind}"
    rt = _rt()
    try:
        doc = rt.policy.get(policy)
    except KeyError:
        _fail(f"no policy {policy!r}; known: {', '.join(d.id for d in rt.policy.docs)}", 2)
    if not any(t.scope == scope for t in doc.thresholds):
        _fail(f"{policy} sets no thresholds for {scope}; it sets: {', '.join(t.scope for t in doc.thresholds) or 'none'}", 2)
    args = {"policy_id": policy, "scope": scope, "deny_at": deny_at}
    if step_up_at is not None:
        args["step_up_at"] = step_up_at
    result = _tool(rt, "replay_threshold", args).result
    if as_json:
        _dump(result.model_dump())
    else:
        typer.echo(render.replay_text(result.model_dump()))


@app.command()
def verdict(decision_id: str, value: Annotated[str, typer.Argument(help="malicious or benign")],
            as_: Annotated[str | None, typer.Option("--as", help="the analyst you act as (see `approve`)")] = None,
            token_file: Annotated[Path | None, typer.Option("--token-file")] = None,
            local_operator: Annotated[bool, typer.Option("--local-operator")] = False,
            attack_type: Annotated[str | None, typer.Option("--attack-type")] = None,
            note: Annotated[str | None, typer.Option("--note")] = None) -> None:
    """Record your verdict on a decision as an analyst or policy owner (feeds threshold replay); audited."""
    from integrations.cli.identity import IdentityError, resolve
    from integrations.services.deps import ServiceDeps
    from integrations.services.verdicts import VerdictRefusal, record_verdict

    rt = _rt()
    try:
        who = resolve(rt, as_=as_, token_file=token_file, local_operator=local_operator)
    except IdentityError as exc:
        _fail(str(exc), 2)
    deps = ServiceDeps.from_runtime(rt)
    got = record_verdict(deps=deps, principal=who.principal, decision_id=decision_id, verdict=value,
                         attack_type=attack_type, note=note, attestation=who.attestation)
    if got.refusal is not None:
        _fail(got.message or got.refusal.value, 1 if got.refusal is VerdictRefusal.NOT_ENTITLED else 2)
    with rt.sessions.begin() as s:
        rt.ledger.checkpoint(s)
    err.print(f"recorded: {decision_id} is {value} (by {who.principal.id})")


@audit_app.command("verify")
def audit_verify(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recompute the ledger's hash chain and Merkle root; name the first bad entry."""
    rt = _rt()
    with rt.sessions() as s:
        report = rt.ledger.verify(s)
    if as_json:
        _dump(report.model_dump(mode="json"))
    elif report.ok:
        typer.echo(f"audit ledger OK: {report.size} entries, root {report.root}")
        typer.echo(f"checked against: {', '.join(report.anchors) or 'nothing outside the database'}")
    else:
        typer.echo(f"audit ledger FAILED at entry {report.first_bad_seq}: {report.problem}")
        for failure in report.failures[1:]:  # each other check that failed, named
            typer.echo(f"  also failed ({failure.check}): {failure.problem}")
    if not report.ok:
        raise typer.Exit(1)
