"""The `glassgate` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from threadpoolctl import threadpool_limits

from integrations import render
from integrations.runtime import Runtime
from integrations.settings import load_settings
from risk.engine import Rejected, decision_record
from risk.model import ModelNotFoundError
from risk.replay import replay as run_replay
from risk.store.queries import NotFound, add_verdict, get_decision, replay_frame, session_decisions
from risk.timeline import build_timeline

app = typer.Typer(help="glassgate: explainable Zero Trust access decisions.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
err = Console(stderr=True)


@app.callback()
def _process_setup() -> None:
    # scikit-learn predicts with an OpenMP parallel section per tree; for one event at a time on a
    # shared machine the hand-offs cost far more than they save (p99 862 ms vs 18 ms in `make bench`).
    threadpool_limits(limits=1, user_api="openmp")


def _rt() -> Runtime:
    return Runtime(load_settings())


def _fail(msg: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {msg}", highlight=False)
    raise typer.Exit(code)


def _dump(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=str) + "\n")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


@app.command()
def train(users: int = 300, days: int = 28, seed: int = 7, test_days: int = 7) -> None:
    """Generate the synthetic world, train the risk model on its earlier days and card it on the later days."""
    from risk.synth import generate_world, world_start_for
    from risk.training import train_on_world

    rt = _rt()
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
                yield n, json.loads(line)
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


@app.command()
def explain(decision_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Why a decision came out as it did: drivers, thresholds and rules, what would change it."""
    rt = _rt()
    with rt.sessions() as s:
        try:
            d, e = get_decision(s, decision_id)
        except NotFound as exc:
            _fail(str(exc))
        rec = decision_record(d)
        if as_json:
            _dump({"decision": rec, "explanation": e.body, "event": d.event})
        else:
            typer.echo(render.explanation_text(rec, e.body))


@app.command()
def timeline(session_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What changed in a session, decision by decision."""
    rt = _rt()
    with rt.sessions() as s:
        try:
            rows = session_decisions(s, session_id)
        except NotFound as exc:
            _fail(str(exc))
        t = build_timeline(session_id, [({**decision_record(d), "event": d.event}, e.body) for d, e in rows])
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
    entry = next((t for t in doc.thresholds if t.scope == scope), None)
    if entry is None:
        _fail(f"{policy} sets no thresholds for {scope}; it sets: {', '.join(t.scope for t in doc.thresholds) or 'none'}", 2)
    su = entry.step_up_at if step_up_at is None else step_up_at
    with rt.sessions() as s:
        frame = replay_frame(s, policy_id=policy, scope=scope)
    try:
        result = run_replay(frame, policy_id=policy, scope=scope, step_up_at=su, deny_at=deny_at)
    except ValueError as exc:
        _fail(str(exc), 2)
    if as_json:
        _dump(result.model_dump())
    else:
        typer.echo(render.replay_text(result.model_dump()))


@app.command()
def verdict(decision_id: str, value: Annotated[str, typer.Argument(help="malicious or benign")],
            analyst: Annotated[str, typer.Option("--analyst")],
            attack_type: Annotated[str | None, typer.Option("--attack-type")] = None,
            note: Annotated[str | None, typer.Option("--note")] = None) -> None:
    """Record an analyst's verdict on a decision (feeds threshold replay)."""
    from risk.audit import AuditKind

    rt = _rt()
    now = rt.clock()
    with rt.sessions.begin() as s:
        try:
            add_verdict(s, decision_id=decision_id, verdict=value, analyst=analyst, attack_type=attack_type, note=note,
                        at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        except (NotFound, ValueError) as exc:
            _fail(str(exc), 2)
        rt.ledger.append(s, kind=AuditKind.VERDICT, subject_id=decision_id,
                         payload={"decision_id": decision_id, "verdict": value, "attack_type": attack_type,
                                  "analyst": analyst, "note": note}, at=now)
    with rt.sessions.begin() as s:
        rt.ledger.checkpoint(s)
    err.print(f"recorded: {decision_id} is {value}")


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
    else:
        typer.echo(f"audit ledger FAILED at entry {report.first_bad_seq}: {report.problem}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo(serve: Annotated[bool, typer.Option("--serve/--no-serve", help="end by serving the API on --host:--port")] = True,
         host: str = "127.0.0.1", port: int = 8000,
         users: int = 300, days: int = 28, seed: int = 7, test_days: int = 7) -> None:
    """Build the demo world (generate, train, replay the later days online), print what happened, write a
    principals file with fresh tokens, and serve the API over it."""
    from integrations.demo import DemoRefused, run_demo

    rt = _rt()
    if serve:
        _port_free_or_fail(host, port)
    with _progress() as prog:
        def stage(desc: str, total: int) -> Callable[[int], None]:
            task = prog.add_task(desc, total=total)
            return lambda n: prog.advance(task, n)
        try:
            result = run_demo(rt, users=users, days=days, seed=seed, test_days=test_days, stage=stage)
        except DemoRefused as exc:
            _fail(str(exc))
    _print_summary(rt, result)
    _print_service_intro(rt, result, host, port, serving=serve)
    if serve:
        _serve(Runtime(load_settings()), host, port)


def _port_free_or_fail(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            _fail(f"cannot serve on {host}:{port}: {exc.strerror}; stop what uses it or pass --port", 2)


def _serve(rt: Runtime, host: str, port: int) -> None:
    import uvicorn

    from integrations.api import create_app
    from integrations.faults import FailpointError, parse
    from integrations.principals import ConfigError

    try:
        parse(rt.settings.failpoints)
        rt.model  # noqa: B018 - a missing model is said plainly before the server starts
        app = create_app(rt)
    except (ModelNotFoundError, ConfigError, FailpointError) as exc:
        _fail(str(exc), 2)
    err.print(f"serving on http://{host}:{port} (OpenAPI at /openapi.json); Ctrl-C stops", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@app.command()
def serve(host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port")] = 8000) -> None:
    """Serve the HTTP API (with the ticket webhooks, and Slack when configured) over GLASSGATE_HOME."""
    _port_free_or_fail(host, port)
    _serve(_rt(), host, port)


def _print_service_intro(rt: Runtime, result: Any, host: str, port: int, *, serving: bool) -> None:
    """Tokens (once), and three requests a newcomer can paste."""
    import shlex

    base = f"http://{host}:{port}"
    by_role: dict[str, str] = {}
    for pid, p in rt.principals.items():
        for role in p.roles:
            by_role.setdefault(role.value, pid)
    typer.echo(f"\n--- the service{'' if serving else ' (start it with: glassgate serve)'}: {base}")
    typer.echo(f"bearer tokens (shown once; {rt.settings.home / 'principals.yaml'} keeps only their SHA-256):")
    for role_name, pid in sorted(by_role.items()):
        typer.echo(f"  {role_name:<13} {pid:<10} {result.tokens[pid]}")
    ex = result.examples
    prefer = ("impossible_travel_denied", "mfa_fatigue", "bulk_export", "deny_example", "step_up_example")
    did = next((ex[k] for k in prefer if k in ex), None) or next(
        (v for k, v in ex.items() if not k.endswith("_session")), None)
    analyst = result.tokens[by_role["analyst"]]
    question = "which policy sets the threshold for OT consoles?"
    if did:
        with rt.sessions() as s:
            d, _ = get_decision(s, did)
        verb = "denied" if d.outcome == "deny" else "stepped up on" if d.outcome == "step_up" else "allowed"
        question = f"why was {d.user_id} {verb} access to {d.resource_id}?"
    typer.echo("try:")
    typer.echo(f"  curl -s -X POST {base}/v1/ask -H 'Authorization: Bearer {analyst}' "
               f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps({'question': question}))}")
    if did:
        typer.echo(f"  curl -s '{base}/v1/decisions/{did}/narrative?audience=ticket' -H 'Authorization: Bearer {analyst}'")
    if result.proposal_id:
        owner = result.tokens[by_role["policy_owner"]]
        typer.echo(f"  curl -s -X POST {base}/v1/proposals/{result.proposal_id}/approve -H 'Authorization: Bearer {owner}' "
                   f"-H 'Content-Type: application/json' -d '{{\"reason\": \"confirmed with the user by phone\"}}'")
        typer.echo(f"  (that approves {by_role['analyst']}'s pending exception request {result.proposal_id}; it expires "
                   "in an hour)")


def _ask_text(rt: Runtime, question: str) -> str:
    import uuid

    from agent.graph import answer_of

    cfg = {"configurable": {"thread_id": f"demo-{uuid.uuid4().hex[:8]}"}}
    rt.graph.invoke({"question": question, "asked_by": "ana", "audience": "analyst"}, cfg)
    out = answer_of(rt.graph.get_state(cfg).values)
    return out["answer"] + ("" if out["verified"] else "\n(failed verification)")


def _print_summary(rt: Runtime, result: Any) -> None:
    from integrations.demo import example_texts

    s = result.summary
    out = [f"\nDemo world ready in {rt.settings.home.resolve()}",
           f"model {s['model_version']}: ROC-AUC {s['roc_auc']:.4f}, PR-AUC {s['pr_auc']:.4f} on the later days; "
           f"the explanation's top family is the attack's cause for {s['top_family_is_cause']:.1%} of attack events",
           f"{s['decisions']} decisions made online: " + ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())),
           f"benign events flagged (step-up or deny): {s['benign_flagged_share']:.2%}; benign look-alikes flagged: "
           + ", ".join(f"{k} {v:.0%}" for k, v in sorted(s["benign_lookalikes_flagged"].items())),
           "per attack type (deny / step-up / allow; top family = cause):"]
    for name, v in s["per_attack_type"].items():
        out.append(f"  {name:<22} {v['deny']:>4} / {v['step_up']:>4} / {v['allow']:>4}   {v['top_family_is_cause']:.0%}")
    out.append(f"audit ledger: {s['audit_entries']} entries, verified {'OK' if s['audit_ok'] else 'FAILED'}")
    typer.echo("\n".join(out))
    for name, rec in example_texts(rt, result.examples):
        typer.echo(f"\n--- example: {name.replace('_', ' ')}")
        if "timeline" in rec:
            typer.echo(render.timeline_text(rec["timeline"]))
        else:
            typer.echo(render.explanation_text(rec["decision"], rec["explanation"]))
    ex = result.examples
    asks = []
    if "impossible_travel_denied" in ex:
        with rt.sessions() as s:
            d, _ = get_decision(s, ex["impossible_travel_denied"])
            user, resource = d.user_id, d.resource_id
        asks = [f"why was {user} denied access to {resource}?", f"would {user} have been allowed from the corporate network?"]
        typer.echo(f"\n--- the agent (offline, verified): glassgate ask \"{asks[0]}\"")
        typer.echo(_ask_text(rt, asks[0]))
    typer.echo("\nTry next:")
    if "impossible_travel_denied" in ex:
        typer.echo(f"  glassgate explain {ex['impossible_travel_denied']}")
    if "posture_degraded_session" in ex:
        typer.echo(f"  glassgate timeline {ex['posture_degraded_session']}")
        asks.append(f"what changed in session {ex['posture_degraded_session']}?")
    asks += ["which policy sets the threshold for OT consoles?", "are confidential-tier step-ups too strict this month?"]
    for q in asks[1:]:
        typer.echo(f"  glassgate ask \"{q}\"")
    typer.echo("  glassgate proposals; glassgate approve PROPOSAL_ID --as bob   (principals: "
               + ", ".join(f"{p.id} ({'/'.join(sorted(r.value for r in p.roles))})" for p in rt.principals.values()) + ")")
    typer.echo("  glassgate replay --policy POL-ACCESS-001 --tier restricted --deny-at 0.8")
    typer.echo(f"  glassgate score {rt.settings.home / 'sample-events.jsonl'}")
    typer.echo("  glassgate audit verify")



# ----------------------------------------------------------------------------- the agent


def _principal_or_fail(rt: Runtime, who: str):
    p = rt.principals.get(who)
    if p is None:
        _fail(f"{who!r} is not a principal in {rt.settings.principals_path}; known: "
              f"{', '.join(sorted(rt.principals))}", 2)
    return p


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


@app.command("eval")
def eval_(cases: Annotated[int, typer.Option(help="world cases to sample (the edge cases come on top)")] = 160,
          seed: Annotated[int, typer.Option(help="world and sampling seed")] = 7,
          out: Annotated[Path | None, typer.Option(help="report root (default GLASSGATE_HOME/reports)")] = None) -> None:
    """Explanation and narrative evals in their own home (GLASSGATE_HOME/eval-world): cause recall, faithfulness,
    completeness, citations, counterfactuals, fidelity, stability; exit 1 when the gate fails."""
    from evals.run_eval import EvalHomeRefused, run_and_print  # evals may import anything; nothing imports evals
    from evals.scenarios import DatasetError

    if cases < 1:
        _fail(f"--cases must be at least 1 (got {cases})", code=2)
    try:
        code = run_and_print(base=load_settings(), n_cases=cases, seed=seed, out=out)
    except (DatasetError, EvalHomeRefused) as exc:
        _fail(str(exc))
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
