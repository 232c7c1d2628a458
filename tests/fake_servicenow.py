"""A small ServiceNow instance on 127.0.0.1 for the ServiceNow ticketing adapter's tests, after the Table API
reference: ``GET /api/now/table/{table}/{sys_id}`` (``sysparm_fields``, ``sysparm_display_value=true`` gives
the work notes journal as text) and ``PATCH`` on the same path with ``{"work_notes": "..."}`` (200,
``{"result": {...}}``). Basic auth (``user:password``) or an OAuth bearer token; JSON in and out; errors are
ServiceNow's ``{"error": {"message", "detail"}, "status": "failure"}``.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from tests.fake_vendor import Answer, FakeVendor

RECORD = re.compile(r"^/api/now/table/([a-z][a-z0-9_]*)/([0-9a-f]{32})$")


class FakeServiceNow(FakeVendor):
    def __init__(self, *, user: str, password: str):
        super().__init__()
        self.user, self.password = user, password
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.notes: dict[tuple[str, str], list[str]] = {}

    def add(self, table: str, sys_id: str, number: str) -> None:
        self.records[(table, sys_id)] = {"sys_id": sys_id, "number": number, "short_description": "access"}
        self.notes[(table, sys_id)] = []

    def authorized(self, headers: dict[str, str], path: str) -> bool:
        want = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return headers.get("authorization") == want

    def error(self, status: int, message: str) -> Answer:
        return status, {"error": {"message": message, "detail": None}, "status": "failure"}, {}

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
              body: Any) -> Answer:
        self.check(headers.get("accept") == "application/json", f"{method} {path}: Accept is {headers.get('accept')}")
        m = RECORD.match(path)
        if m is None or (m.group(1), m.group(2)) not in self.records:
            return self.error(404, "No Record found")
        key = (m.group(1), m.group(2))
        if method == "GET":
            self.check(query.get("sysparm_display_value") == ["true"], f"GET {path}: journal needs display values")
            journal = "".join(f"2026-11-29 10:00:00 - glassgate (Work notes)\n{n}\n\n" for n in reversed(self.notes[key]))
            fields = query.get("sysparm_fields", [""])[0].split(",")
            rec = {**self.records[key], "work_notes": journal}
            return 200, {"result": {f: rec[f] for f in fields if f in rec}}, {}
        if method == "PATCH":
            self.check(headers.get("content-type") == "application/json", f"PATCH {path}: not JSON")
            if not (isinstance(body, dict) and set(body) == {"work_notes"} and isinstance(body["work_notes"], str)):
                return self.error(400, "send {work_notes: text}")
            self.notes[key].append(body["work_notes"])
            return 200, {"result": {**self.records[key], "work_notes": ""}}, {}
        return self.error(405, "Method not allowed")
