"""Vendor records as they arrive in a body or a file: a JSON array, one JSON object, or NDJSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


class BadRecord:
    """A record that did not decode; it is refused on its own, the others still go in."""

    def __init__(self, message: str):
        self.message = message


class BadBody(ValueError):
    """The whole body is unreadable (not UTF-8, or an array that is not JSON)."""


def iter_records(data: bytes) -> Iterator[Any]:
    """Decode ``data`` into records: a JSON array (each item), a JSON object (itself), else NDJSON (one
    value a line; a line that is not JSON yields a :class:`BadRecord` naming the line)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadBody(f"not UTF-8: invalid byte at offset {exc.start}") from None
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as exc:
            first = next((ln for ln in text.splitlines() if ln.strip()), "")
            if head == "[" or not _is_json(first):  # one pretty-printed object with an error, not NDJSON
                raise BadBody(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        else:
            yield from (whole if isinstance(whole, list) else [whole])
            return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRecord(f"line {n} is not JSON: {exc.msg} at column {exc.colno}")


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def unwrap(vendor: str, records: list[Any]) -> list[Any]:
    """A delivery's envelope opened: Okta Event Hooks (``{"data": {"events": [...]}}``), Azure Monitor via
    Event Hubs (``{"records": [...]}``) and a Graph list page (``{"value": [...]}``); anything else as is."""
    if len(records) != 1 or not isinstance(records[0], dict):
        return records
    body = records[0]
    if vendor == "okta" and isinstance(body.get("data"), dict) and isinstance(body["data"].get("events"), list):
        return list(body["data"]["events"])
    if vendor == "entra":
        for key in ("records", "value"):
            if isinstance(body.get(key), list) and "id" not in body:
                return list(body[key])
    return records
