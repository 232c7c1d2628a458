"""Request dependencies, as ``Annotated`` aliases: the runtime, a database session, the authenticated
principal (with role checks), the tool context and size-limited JSON bodies."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from agent.approval import Principal, Role
from integrations import jsonbounds
from integrations.api.errors import ProblemError
from integrations.principals import principal_for_token
from integrations.runtime import Runtime
from tools.context import ToolContext

MiB = 1024 * 1024
EVENT_MAX_BYTES = 1 * MiB
BATCH_MAX_BYTES = 8 * MiB
SMALL_MAX_BYTES = 64 * 1024

READERS = frozenset({Role.ANALYST, Role.POLICY_OWNER, Role.ADMIN})
INGESTERS = frozenset({Role.INGEST, Role.ADMIN})


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with rt.sessions() as s:
        yield s


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthenticated(detail: str) -> ProblemError:
    return ProblemError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="glassgate"'})


# Declares the scheme in the OpenAPI document (every operation that needs a principal lists it); the header
# itself is read below, so that each way of getting it wrong gets its own precise 401.
_BEARER = HTTPBearer(auto_error=False, description="A token from the principals file (GLASSGATE_CONFIG), "
                                                   "which holds only its SHA-256.")


def current_principal(request: Request,
                      _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None) -> Principal:
    """The principal whose token is presented as ``Authorization: Bearer <token>``; 401 otherwise."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthenticated("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("the Authorization header must be 'Bearer <token>'")
    entry = principal_for_token(request.app.state.principal_entries.values(), token)
    if entry is None:
        raise _unauthenticated("the bearer token is not valid")
    return Principal(id=entry.id, roles=frozenset(entry.roles))


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def requires(allowed: frozenset[Role], what: str) -> Callable[[Principal], Principal]:
    def check(p: CurrentPrincipal) -> Principal:
        if not (p.roles & allowed):
            raise ProblemError(403, f"{p.id} (roles: {', '.join(sorted(r.value for r in p.roles)) or 'none'}) may not "
                                    f"{what}; that needs one of: {', '.join(sorted(r.value for r in allowed))}")
        return p
    return check


Reader = Annotated[Principal, Depends(requires(READERS, "read decisions"))]
Ingester = Annotated[Principal, Depends(requires(INGESTERS, "post events"))]
VerdictAuthor = Annotated[Principal, Depends(requires(frozenset({Role.ANALYST, Role.POLICY_OWNER}), "record verdicts"))]


def get_tools(request: Request, p: CurrentPrincipal) -> ToolContext:
    """The shared tool context, stamped with the calling principal."""
    return dataclasses.replace(request.app.state.tool_context, principal=p.id)


ToolsDep = Annotated[ToolContext, Depends(get_tools)]


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ProblemError(400, "Content-Length is not a number") from None
        if n > limit:
            raise ProblemError(413, f"the body is {n} bytes; the limit here is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(data: bytes) -> Any:
    if not data.strip():
        raise ProblemError(400, "the body is empty; send a JSON object", slug="malformed-json", title="Malformed JSON")
    try:
        return jsonbounds.loads(data)
    except jsonbounds.JsonBoundsError as exc:
        raise ProblemError(400, f"the body is refused: {exc}", slug="malformed-json", title="Malformed JSON") from None
    except UnicodeDecodeError as exc:
        raise ProblemError(400, f"the body is not UTF-8: invalid byte at offset {exc.start}", slug="malformed-json",
                           title="Malformed JSON") from None
    except json.JSONDecodeError as exc:
        raise ProblemError(400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           slug="malformed-json", title="Malformed JSON") from None


def json_body(limit: int) -> Callable[[Request], Coroutine[Any, Any, Any]]:
    """A dependency giving the decoded JSON body (any JSON value), read only up to ``limit`` bytes."""
    async def body(request: Request) -> Any:
        return parse_json(await read_limited(request, limit))
    return body


EventBody = Annotated[Any, Depends(json_body(EVENT_MAX_BYTES))]
BatchBody = Annotated[Any, Depends(json_body(BATCH_MAX_BYTES))]
SmallBody = Annotated[Any, Depends(json_body(SMALL_MAX_BYTES))]

# Anyone but an ingest-only service may *try* to decide a proposal; the approval rules then decide entitlement.
ProposalDecider = Annotated[Principal, Depends(requires(READERS, "approve or reject proposals"))]
