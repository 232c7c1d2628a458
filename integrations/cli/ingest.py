"""Commands for decisions glassgate did not make: import vendor sign-in logs from a file, or poll them."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import httpx
import typer

from integrations.cli.base import _dump, _fail, _progress, _rt, app, err
from integrations.ingest import Vendor
from integrations.ingest.entra_pull import GraphSignIns, MsalTokens
from integrations.ingest.okta_pull import OktaLogs
from integrations.ingest.pull import LogSource
from integrations.ingest.records import BadBody, iter_records
from integrations.runtime import Runtime
from integrations.services.deps import ServiceDeps
from integrations.services.surrogate import SurrogateError, explain_by_surrogate, fidelity_line, train_surrogate
from integrations.services.vendor_ingest import ingest_records
from integrations.services.vendor_pull import poll_once
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


connector_app = typer.Typer(help="Pull connectors: poll Okta's System Log or Entra's sign-ins.", no_args_is_help=True)
app.add_typer(connector_app, name="connector")


def _source(rt: Runtime, which: str) -> LogSource:
    s = rt.settings
    start = s.connector_start or (rt.clock() - timedelta(hours=1))
    http = httpx.Client(timeout=30)
    if which == "okta":
        if not (s.okta_org_url and s.okta_api_token):
            _fail("set GLASSGATE_OKTA_ORG_URL and GLASSGATE_OKTA_API_TOKEN (an SSWS token with okta.logs.read)", 2)
        return OktaLogs(org_url=s.okta_org_url, token=s.okta_api_token, start=start, client=http)
    if not (s.entra_tenant_id and s.entra_client_id and s.entra_client_secret):
        _fail("set GLASSGATE_ENTRA_TENANT_ID, GLASSGATE_ENTRA_CLIENT_ID and GLASSGATE_ENTRA_CLIENT_SECRET "
              "(an app with AuditLog.Read.All)", 2)
    tokens = MsalTokens(authority_host=s.entra_authority_host, tenant_id=s.entra_tenant_id,
                        client_id=s.entra_client_id, client_secret=s.entra_client_secret, http_client=http)
    return GraphSignIns(graph_url=s.graph_url, token=tokens, start=start, client=http)


@connector_app.command("run")
def connector_run(which: Annotated[Literal["okta", "entra"], typer.Argument(help="okta or entra")],
                  once: Annotated[bool, typer.Option("--once", help="poll until caught up, then exit")] = False) -> None:
    """Poll a vendor log from the stored cursor, scoring every sign-in in shadow; every
    GLASSGATE_CONNECTOR_POLL_SECONDS until stopped, or once with --once (exit 1 if the vendor API failed)."""
    rt = _rt()
    deps = ServiceDeps.from_runtime(rt)
    source = _source(rt, which)
    while True:
        res = poll_once(deps=deps, source=source)
        for line in res.rejections:
            err.print(f"rejected {line}", highlight=False, markup=False)
        err.print(f"{res.connector}: {res.pages} pages, {res.received} records, {res.created} new, "
                  f"{res.duplicates} already stored, {res.rejected} rejected"
                  + (f"; vendor API failed: {res.error} (the next poll resumes at the cursor)" if res.error else ""),
                  highlight=False, markup=False)
        if once:
            if res.error:
                raise typer.Exit(1)
            return
        time.sleep(rt.settings.connector_poll_seconds)


surrogate_app = typer.Typer(help="A surrogate model of a vendor's decisions, where the vendor states no reasons.",
                            no_args_is_help=True)
app.add_typer(surrogate_app, name="surrogate")


@surrogate_app.command("train")
def surrogate_train(vendor: Annotated[Literal["okta", "entra", "ocsf"], typer.Option("--vendor")]) -> None:
    """Fit a small decision tree of the vendor's outcomes on stored history; card it on a later held-out split."""
    deps = ServiceDeps.from_runtime(_rt())
    try:
        card = train_surrogate(deps=deps, vendor=vendor)
    except SurrogateError as exc:
        _fail(str(exc))
    err.print(fidelity_line(card), highlight=False, markup=False)


@surrogate_app.command("explain")
def surrogate_explain(decision_id: str, vendor: Annotated[Literal["okta", "entra", "ocsf"], typer.Option("--vendor")]
                      ) -> None:
    """The surrogate's reading of a vendor decision, with its fidelity beside it (refused below the floor)."""
    deps = ServiceDeps.from_runtime(_rt())
    try:
        res = explain_by_surrogate(deps=deps, decision_id=decision_id, vendor=vendor)
    except SurrogateError as exc:
        _fail(str(exc))
    if res.status == "refused":
        err.print(f"refused: {res.reason}\n{res.fidelity_line}", highlight=False, markup=False)
        raise typer.Exit(1)
    typer.echo(f"{vendor} decided {res.vendor_outcome}; the surrogate predicts {res.surrogate_outcome} because: "
               + "; ".join(res.path) + f"\n{res.fidelity_line}")
