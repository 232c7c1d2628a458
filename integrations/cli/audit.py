"""`glassgate audit init`: anchor a new ledger (its signing key and its first signed witness)."""

from __future__ import annotations

from typing import Annotated

import typer

from integrations.audit_anchor import init_ledger
from integrations.cli.base import _fail, _rt, audit_app, err
from risk.audit import LedgerError


@audit_app.command("init")
def audit_init(adopt: Annotated[bool, typer.Option(
        "--adopt-current",
        help="Trust the ledger as it is now although it is not empty or already has a witness, and start a "
             "new ledger generation over it. Only when you know its content is the one written.")] = False) -> None:
    """Create the Ed25519 signing key (outside GLASSGATE_HOME) if there is none, and the first signed witness."""
    rt = _rt()
    try:
        head, created = init_ledger(rt, adopt=adopt)
    except LedgerError as exc:
        hint = "" if adopt else " (--adopt-current overrides this, if you trust the ledger as it is)"
        _fail(f"{exc}{hint}", 2)
    if created:
        err.print(f"created the audit signing key {rt.settings.audit_key} (public key beside it, .pub)")
    typer.echo(f"audit ledger initialised: ledger {head.ledger_id}, {head.size} entries, root {head.root}, "
               f"signed by key {head.key_id}; heads are published to {rt.settings.audit_sink}")
