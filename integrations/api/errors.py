"""Every error as RFC 9457 problem details (``application/problem+json``).

A problem has ``type``, ``title``, ``status``, ``detail`` and ``instance``; input problems (422) add
``errors``, a list of ``{"field", "message"}`` naming each bad field by its dotted path (the same names
the event validator and the tools use).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
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


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, ProblemError(500, "an unexpected error occurred; it has been logged"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_unexpected)


# OpenAPI: the error responses every route may give
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": Problem, "description": _DEFAULTS.get(s, ("", "Error"))[1],
                "content": {MEDIA_TYPE: {}}} for s in statuses}
