"""What the schemathesis run adds to the service's OpenAPI document: credentials, and the checks the
document cannot express on its own.

- ``SignedBearer``: a ``requests`` auth (schemathesis applies it to every generated request, in process)
  that presents a bearer token and signs ticket webhook deliveries with a Standard Webhooks secret. The
  signature covers the exact bytes sent, so it is computed on the prepared request, after serialization.
- ``problem_documents``: every 4xx/5xx answer is an RFC 9457 problem document (media type, members,
  ``status`` equal to the HTTP status), whatever the schema documents.
- ``refuses_anonymous``: without credentials, every operation but the public ones answers 401 with a
  ``WWW-Authenticate`` challenge.
- ``ndjson_lines``: the audit export is JSON lines; each line must match the documented entry schema.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import requests
import schemathesis

from integrations.api.errors import MEDIA_TYPE as PROBLEM
from integrations.api.errors import Problem
from integrations.webhooks import sign_standard

WEBHOOK_PATH = "/v1/webhooks/tickets"
INGEST_SIGNED = frozenset({"/v1/ingest/entra", "/v1/ingest/ocsf"})  # vendor pushes, Standard Webhooks signed
INGEST_PATHS = INGEST_SIGNED | {"/v1/ingest/okta"}  # Okta's hook: its own Authorization header (404 unconfigured)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
NDJSON = "application/x-ndjson"


class SignedBearer(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request; ticket webhooks also get fresh Standard Webhooks
    headers (a new ``webhook-id`` each time, so no delivery is taken for a retry of another)."""

    def __init__(self, token: str, webhook_secret: str):
        self.token, self.secret = token, webhook_secret
        self.signed = 0  # deliveries signed (the test reads it to know the webhook was really exercised)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        if urlsplit(r.url or "").path in {WEBHOOK_PATH, *INGEST_SIGNED}:
            body = r.body or b""
            data = body.encode() if isinstance(body, str) else bytes(body)
            msg_id, ts = f"msg_{uuid.uuid4().hex}", int(time.time())
            r.headers["webhook-id"] = msg_id
            r.headers["webhook-timestamp"] = str(ts)
            r.headers["webhook-signature"] = sign_standard(self.secret, msg_id=msg_id, timestamp=ts, body=data)
            self.signed += 1
        return r


def _header(response: schemathesis.Response, name: str) -> str:
    values = response.headers.get(name.lower()) or []
    return values[0] if values else ""


def problem_documents(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                      case: schemathesis.Case) -> bool | None:
    """An error is an ``application/problem+json`` document with the members of ``Problem``."""
    if response.status_code < 400:
        return None
    media = _header(response, "content-type").split(";")[0].strip()
    assert media == PROBLEM, f"{response.status_code} answered as {media!r}, not {PROBLEM}: {response.text[:300]}"
    doc = Problem.model_validate_json(response.content)
    assert doc.status == response.status_code, f"problem status {doc.status} != HTTP {response.status_code}"
    assert doc.detail, "the problem has an empty detail"
    return None


def refuses_anonymous(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                      case: schemathesis.Case) -> bool | None:
    """Without a token, only the public paths answer; the rest is 401 with a challenge."""
    if case.operation.path in PUBLIC_PATHS:
        return None
    if case.operation.path == WEBHOOK_PATH:  # signed, not bearer: unsigned deliveries are 401 too
        assert response.status_code in (401, 413), f"unsigned delivery answered {response.status_code}"
        return None
    if case.operation.path in INGEST_PATHS:  # signed or shared-secret pushes, not bearer
        assert response.status_code in (401, 404, 413), f"unsigned push answered {response.status_code}"
        return None
    assert response.status_code == 401, f"anonymous request answered {response.status_code}: {response.text[:300]}"
    assert _header(response, "www-authenticate").startswith("Bearer"), "401 without a Bearer challenge"
    return None


def ndjson_lines(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                 case: schemathesis.Case) -> bool | None:
    """Each line of a JSON-lines answer matches the schema documented for it (one entry per line)."""
    if not _header(response, "content-type").startswith(NDJSON):
        return None
    responses = case.operation.definition.raw["responses"]
    schema: dict[str, Any] = responses[str(response.status_code)]["content"][NDJSON]["schema"]
    # JSON lines end with "\n" only: a JSON string may hold U+2028 or U+0085, which splitlines() splits on
    lines = response.text.split("\n")
    if lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        try:
            jsonschema_rs.validate(schema, json.loads(line))
        except jsonschema_rs.ValidationError as exc:
            raise AssertionError(f"line {i + 1} does not match the documented entry: {exc.message} at "
                                 f"{list(exc.instance_path)}") from None
    return None
