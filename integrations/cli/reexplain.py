"""`glassgate reexplain`: stored decisions' attributions under another model version, in bulk."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from integrations.cli.base import _dump, _fail, _progress, _rt, app
from integrations.services.deps import ServiceDeps
from integrations.services.reexplain import reexplain_decisions
from risk.model import ModelNotFoundError, load_model


@app.command()
def reexplain(
    since: Annotated[str | None, typer.Option(help="only decisions at or after this ISO time (with zone)")] = None,
    model: Annotated[Path | None, typer.Option(help="a model version directory; default: the current model")] = None,
    chunk: Annotated[int, typer.Option(min=1, help="decisions per read and transaction")] = 5000,
) -> None:
    """Re-explain stored decisions under a model version, beside their original explanations."""
    try:
        when = None if since is None else datetime.fromisoformat(since)
    except ValueError:
        _fail(f"--since: {since!r} is not an ISO 8601 time (e.g. 2026-12-01T00:00:00Z)", 2)
    if when is not None and when.tzinfo is None:
        _fail("--since: give a time zone (e.g. 2026-12-01T00:00:00Z)", 2)
    rt = _rt()
    try:
        m = load_model(model) if model is not None else rt.model
    except ModelNotFoundError as exc:
        _fail(str(exc))
    with _progress() as prog:
        task = prog.add_task(f"re-explaining under {m.version}", total=None)
        result = reexplain_decisions(deps=ServiceDeps.from_runtime(rt), model=m, since=when, chunk=chunk,
                                     progress=lambda done, total: prog.update(task, completed=done, total=total))
    _dump(result.model_dump())
