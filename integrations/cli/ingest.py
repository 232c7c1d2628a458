"""Commands for decisions glassgate did not make: import vendor sign-in logs from a file (and, in
:mod:`integrations.cli.connectors`, poll them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from integrations.cli.base import _dump, _fail, _progress, _rt, app, err
from integrations.ingest import Vendor
from integrations.ingest.records import BadBody, iter_records
from integrations.services.deps import ServiceDeps
from integrations.services.vendor_ingest import ingest_records
from risk.model import ModelNotFoundError


@app.command("import")
def import_(source: Annotated[str, typer.Argument(help="a JSON array or NDJSON file of vendor records, or - for stdin")],
            fmt: Annotated[Vendor, typer.Option("--format", help="whose records: okta, entra or ocsf")],
            as_json: Annotated[bool, typer.Option("--json", help="one JSON result line per record")] = False) -> None:
    """Import Okta System Log events, Entra sign-ins or OCSF Authentication (3002) events: each is scored in
    shadow by glassgate and stored beside the vendor's decision; a bad record gets an error line naming the
    vendor field, and nothing is stored for it."""
    if source != "-" and not Path(source).is_file():
        _fail(f"no such file: {source}")
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    try:
        records = list(iter_records(data))
    except BadBody as exc:
        _fail(f"{source}: {exc}")
    rt = _rt()
    deps = ServiceDeps.from_runtime(rt)
    try:
        deps.engine()
    except ModelNotFoundError as exc:
        _fail(str(exc))
    with _progress() as prog:
        task = prog.add_task(f"importing {fmt.value}", total=len(records))
        result = ingest_records(deps=deps, vendor=fmt, records=records, progress=lambda n: prog.advance(task, n))
    rt.engine.checkpoint()
    for item in result.items:
        if as_json:
            _dump(item.model_dump(mode="json", exclude_none=True))
        elif item.status == "rejected":
            why = "; ".join(f"{e.field}: {e.message}" for e in item.errors)
            err.print(f"record {item.index + 1}: {why}", highlight=False, markup=False)
    compared = [i for i in result.items if i.agreement in ("agree", "disagree")]
    agree = sum(1 for i in compared if i.agreement == "agree")
    err.print(f"{fmt.value}: {result.received} records, {result.created} new, {result.duplicates} already imported, "
              f"{result.rejected} rejected; glassgate (in shadow) agrees with {fmt.value} on {agree} of "
              f"{len(compared)} risk decisions", highlight=False)
    if result.rejected:
        raise typer.Exit(1)
