"""Every error as RFC 9457 problem details (``application/problem+json``).

A problem has ``type``, ``title``, ``status``, ``detail`` and ``instance``; input problems (422) add
``errors``, a list of ``{"field", "message"}`` naming each bad field by its dotted path (the same names
the event validator and the tools use).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("glassgate.api")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:glassgate:problem:"

# status -> (type slug, title) for problems raised without a more specific type
_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed for this principal"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    500: ("internal", "Internal error"),
    503: ("not-ready", "Service not ready"),
}

RETRY_AFTER_SECONDS = 5  # when the database is unavailable: a client should retry after about this long
# PostgreSQL SQLSTATE classes that mean "the server is not there for you right now": connection exception,
# insufficient resources, operator intervention (shutting down, starting up)
_PG_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})
# SQLite result codes of the same nature: busy, locked, I/O error, cannot open the file
_SQLITE_UNAVAILABLE_CODES = frozenset({5, 6, 10, 14})


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """The problem document (also the OpenAPI schema of error responses)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldProblem] | None = None


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None, title: str | None = None,
                 errors: Iterable[Mapping[str, str] | FieldProblem] | None = None,
                 headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None):
        default_slug, default_title = _DEFAULTS.get(status, ("error", "Error"))
        self.status, self.detail = status, detail
        self.slug, self.title = slug or default_slug, title or default_title
        self.errors = None if errors is None else [
            e if isinstance(e, FieldProblem) else FieldProblem(field=e["field"], message=e["message"]) for e in errors]
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(detail)


def invalid(errors: Iterable[Mapping[str, str] | FieldProblem], detail: str | None = None) -> ProblemError:
    errs = [e if isinstance(e, FieldProblem) else FieldProblem(**e) for e in errors]
    return ProblemError(422, detail or "; ".join(f"{e.field}: {e.message}" for e in errs), errors=errs)


def problem_response(request: Request, exc: ProblemError) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_PREFIX + exc.slug, "title": exc.title, "status": exc.status,
                            "detail": exc.detail, "instance": request.url.path}
    if exc.errors is not None:
        body["errors"] = [e.model_dump() for e in exc.errors]
    body.update(exc.extra)
    return JSONResponse(body, status_code=exc.status, media_type=MEDIA_TYPE, headers=exc.headers or None)


def field_path(loc: Iterable[Any]) -> str:
    """pydantic/FastAPI location -> the dotted field name ("body"/"query"/"path" dropped)."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header") and p != "[key]"
             and not (isinstance(p, str) and p.startswith("function-"))]
    return ".".join(parts) or "(body)"


def from_validation(exc: ValidationError | RequestValidationError, prefix: str = "") -> list[FieldProblem]:
    out = []
    for err in exc.errors():
        path = field_path(err.get("loc", ()))
        out.append(FieldProblem(field=f"{prefix}{path}" if prefix else path, message=str(err.get("msg", "invalid"))))
    return out


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return problem_response(request, ProblemError(exc.status_code, detail, headers=exc.headers))


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = from_validation(exc)
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return problem_response(request, ProblemError(400, "the body is not valid JSON", slug="malformed-json",
                                                      title="Malformed JSON", errors=errors))
    return problem_response(request, invalid(errors))


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or used right now (retrying later can succeed),
    as opposed to a bug or bad data. Decided on exception types, SQLSTATE classes and result codes."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection within the pool timeout
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return bool(exc.connection_invalidated) or (exc.orig is not None and database_unavailable(exc.orig))
    if isinstance(exc, psycopg.InterfaceError):  # e.g. a connection closed under us
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate  # None when the connection could not be made at all
        return state is None or state[:2] in _PG_UNAVAILABLE_CLASSES
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) in _SQLITE_UNAVAILABLE_CODES
    return False


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _on_unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return problem_response(request, ProblemError(
        503, "the database is unavailable right now; retry after Retry-After seconds (an event is idempotent "
        "on its event_id and a delivery on its id, so a retry never records anything twice)",
        slug="database-unavailable", title="Database unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, ProblemError(500, "an unexpected error occurred; it has been logged"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    for db_error in (sa_exc.DBAPIError, sa_exc.TimeoutError, psycopg.Error, sqlite3.Error):
        app.add_exception_handler(db_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
    _document_problems(app)


# OpenAPI: the error responses every route may give, documented under the media type they are served as
PROBLEM_REF = "#/components/schemas/Problem"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"description": _DEFAULTS.get(s, ("", "Error"))[1],
                "content": {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}} for s in statuses}


def self_contained(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` inlined, for a request body in ``openapi_extra``: there a
    ``#/$defs/...`` reference would resolve against the OpenAPI document's root and dangle. (The models
    used for bodies are not recursive.)"""
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: inline(v) for k, v in node.items() if k != "$ref"}
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **rest}
            return {k: inline(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node
    out: dict[str, Any] = inline(schema)
    return out


def _document_problems(app: FastAPI) -> None:
    """Put ``Problem`` in the document's components (the routes refer to it) and make FastAPI's own 422
    entries (``HTTPValidationError``, which this app never sends) the problem document it does send."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update({**problem.pop("$defs", {}), "Problem": problem})
            fastapi_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
            for path in doc.get("paths", {}).values():
                for op in path.values():
                    content = op.get("responses", {}).get("422", {}).get("content", {})
                    if content.get("application/json", {}).get("schema") == fastapi_422:
                        op["responses"]["422"] = problem_responses(422)[422]
            if "HTTPValidationError" not in json.dumps(doc.get("paths")):
                schemas.pop("HTTPValidationError", None)
                schemas.pop("ValidationError", None)
        assert app.openapi_schema is not None  # build() stored it
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]
