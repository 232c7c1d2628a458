"""The command-line app, its process set-up and the helpers every command uses."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from threadpoolctl import threadpool_limits

from integrations.runtime import Runtime
from integrations.settings import load_settings

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
    # State files (the database, checkpoints, the witness, principals, models) are the owner's alone.
    os.umask(0o077)


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
