"""Commands that build or run the whole product: demo, serve, eval."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from integrations import render
from integrations.cli.base import _fail, _progress, _rt, app, err
from integrations.runtime import Runtime
from integrations.settings import load_settings
from risk.model import ModelNotFoundError
from risk.store.queries import get_decision


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
    from integrations.httpguard import protocol

    uvicorn.run(app, host=host, port=port, log_level="warning", http=protocol(rt.settings.header_timeout_seconds))


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
    typer.echo(f"dashboard: {base}/ui (sign in with a token below)")
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
    from integrations.services.ask import ask, new_thread_id
    from integrations.services.deps import ServiceDeps

    out = ask(deps=ServiceDeps.from_runtime(rt), question=question, asked_by="ana", thread_id=new_thread_id("demo"))
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
    # ask and approve act as a principal: a token (GLASSGATE_TOKEN, printed below) or an explicit local operator
    for q in asks[1:]:
        typer.echo(f"  glassgate ask --local-operator --as ana \"{q}\"")
    typer.echo("  glassgate proposals; glassgate approve PROPOSAL_ID --local-operator --as bob   (principals: "
               + ", ".join(f"{p.id} ({'/'.join(sorted(r.value for r in p.roles))})" for p in rt.principals.values()) + ")")
    typer.echo("  glassgate replay --policy POL-ACCESS-001 --tier restricted --deny-at 0.8")
    typer.echo(f"  glassgate score {rt.settings.home / 'sample-events.jsonl'}")
    typer.echo("  glassgate audit verify")



# ----------------------------------------------------------------------------- the agent


@app.command("eval")
def eval_(cases: Annotated[int, typer.Option(help="world cases to sample (the edge cases come on top)")] = 160,
          seed: Annotated[int, typer.Option(help="world and sampling seed")] = 7,
          out: Annotated[Path | None, typer.Option(help="report root (default GLASSGATE_HOME/reports)")] = None) -> None:
    """Explanation and narrative evals in their own home (GLASSGATE_HOME/eval-world): cause recall, faithfulness,
    completeness, citations, counterfactuals, fidelity, stability; exit 1 when the gate fails."""
    import subprocess
    import sys

    if cases < 1:
        _fail(f"--cases must be at least 1 (got {cases})", code=2)
    # The evals are a separate package that may import anything, so nothing here imports them: the command
    # runs them as their own module, in this environment, and passes on their exit code.
    cmd = [sys.executable, "-m", "evals.run_eval", "--cases", str(cases), "--seed", str(seed)]
    raise typer.Exit(subprocess.run([*cmd, *(["--out", str(out)] if out else [])], check=False).returncode)
