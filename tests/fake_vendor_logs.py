"""Small Okta System Log and Microsoft Graph (with its identity platform) servers on 127.0.0.1 for the pull
connectors' tests, shaped after the published APIs: ``GET /api/v1/logs`` (``since``/``after``, ``limit``,
``sortOrder``, ``Link: rel="next"``, ``X-Rate-Limit-Reset``), the OpenID configuration and client-credentials
token endpoint msal uses, and ``GET /v1.0/auditLogs/signIns`` (``$filter=createdDateTime ge``, ``$orderby``,
``$top``, ``@odata.nextLink``, ``Retry-After``). Each checks what it receives and records problems.

``script`` maps the number of a data request (1-based) to what to answer instead: ``("throttle", seconds)``
(429 with the vendor's reset header) or ``("fail", status)``; each entry is used once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class Log:
    records: list[dict[str, Any]]
    script: dict[int, tuple[str, float]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    data_requests: int = 0
    now: float = 1_800_000_000.0  # the clock the reset headers are written against


def _send(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("content-type", "application/json")
    h.send_header("content-length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


def _scripted(h: BaseHTTPRequestHandler, log: Log, reset_header: str) -> bool:
    log.data_requests += 1
    step = log.script.pop(log.data_requests, None)
    if step is None:
        return False
    kind, value = step
    if kind == "throttle":
        hdr = {"Retry-After": str(int(value))} if reset_header == "retry-after" else \
            {"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(log.now + value))}
        _send(h, 429, {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit due to too many requests."}
              if reset_header != "retry-after" else {"error": {"code": "TooManyRequests"}}, hdr)
    else:
        _send(h, int(value), {"error": "scripted failure"})
    return True


class OktaHandler(BaseHTTPRequestHandler):
    log: Log
    token: str

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        self.log.requests.append(("GET", u.path, q))
        if u.path != "/api/v1/logs":
            return _send(self, 404, {"errorCode": "E0000022"})
        if self.headers.get("authorization") != f"SSWS {self.token}":
            self.log.problems.append(f"bad Authorization: {self.headers.get('authorization')!r}")
            return _send(self, 401, {"errorCode": "E0000011"})
        if q.get("sortOrder") != "ASCENDING":
            self.log.problems.append(f"sortOrder {q.get('sortOrder')!r}, polling needs ASCENDING")
        if "after" not in q and "since" not in q:
            self.log.problems.append("neither since nor after")
        if _scripted(self, self.log, "x-rate-limit-reset"):
            return None
        limit = int(q.get("limit", "100"))
        if "after" in q:
            start = int(q["after"])
        else:
            start = next((i for i, e in enumerate(self.log.records) if e["published"] >= q["since"]),
                         len(self.log.records))
        page = self.log.records[start: start + limit]
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        nxt = f"{host}/api/v1/logs?" + urlencode({"after": start + len(page), "limit": limit, "sortOrder": "ASCENDING"})
        return _send(self, 200, page, {"Link": f'<{host}{self.path}>; rel="self", <{nxt}>; rel="next"'})


class GraphHandler(BaseHTTPRequestHandler):
    log: Log
    tenant: str
    client_id: str
    client_secret: str
    tokens_issued: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def _host(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def do_GET(self) -> None:
        u = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        self.log.requests.append(("GET", u.path, q))
        if u.path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            base = f"{self._host()}/{self.tenant}"
            return _send(self, 200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})
        if u.path != "/v1.0/auditLogs/signIns":
            return _send(self, 404, {"error": {"code": "ResourceNotFound"}})
        auth = self.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.tokens_issued:
            self.log.problems.append(f"bad bearer token {auth!r}")
            return _send(self, 401, {"error": {"code": "InvalidAuthenticationToken"}})
        if _scripted(self, self.log, "retry-after"):
            return None
        if "$skiptoken" in q:
            since, start, top = q["$skiptoken"].split("|")
        else:
            f = q.get("$filter", "")
            if not f.startswith("createdDateTime ge ") or q.get("$orderby") != "createdDateTime asc":
                self.log.problems.append(f"unexpected $filter/$orderby: {f!r} {q.get('$orderby')!r}")
            since, start, top = f.removeprefix("createdDateTime ge "), "0", q.get("$top", "100")
        rows = [r for r in self.log.records if r["createdDateTime"] >= since]
        a, n = int(start), int(top)
        body: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",
                                "value": rows[a: a + n]}
        if a + n < len(rows):
            body["@odata.nextLink"] = f"{self._host()}/v1.0/auditLogs/signIns?" + urlencode(
                {"$skiptoken": f"{since}|{a + n}|{n}"})
        return _send(self, 200, body)

    def do_POST(self) -> None:
        u = urlsplit(self.path)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["content-length"])).decode()).items()}
        self.log.requests.append(("POST", u.path, {k: v for k, v in form.items() if k != "client_secret"}))
        if u.path != f"/{self.tenant}/oauth2/v2.0/token":
            return _send(self, 404, {"error": "not_found"})
        if (form.get("grant_type"), form.get("client_id"), form.get("client_secret"), form.get("scope")) != (
                "client_credentials", self.client_id, self.client_secret, "https://graph.microsoft.com/.default"):
            self.log.problems.append(f"bad token request {form.get('grant_type')!r} {form.get('scope')!r}")
            return _send(self, 401, {"error": "invalid_client", "error_description": "AADSTS7000215"})
        tok = f"graph-token-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(tok)
        return _send(self, 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": tok})


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), which the test's client trusts explicitly."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True).sign(key, hashes.SHA256()))
    cp, kp = tmp / "cert.pem", tmp / "key.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp


def serve(handler: type[BaseHTTPRequestHandler], *, tls: tuple[Path, Path] | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
