"""The typed seam between glassgate's executor and an IAM system it acts in (Okta, Entra, Keycloak).

A vendor adapter receives a frozen :class:`IamRequest` and returns an :class:`IamResult`; it never sees a
database session or an ORM row. The request's ``idempotency_key`` is the proposal id (``<id>:end`` for the
removal of an exception at its expiry). No vendor offers idempotency keys on these calls, so each adapter
compares before it writes: it reads the vendor's state first (is the user in the exception group, is the
session still alive) and answers ``already_applied`` without writing when the state is already the target.
That same read is the reconciliation after a crash between the vendor call and glassgate's record: the
retry finds the state applied and does not call twice.

Which action kinds a vendor executes, and how, is configuration (:class:`Capabilities`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class IamAction(StrEnum):
    """What an adapter is asked to do."""

    REVOKE_SESSION = "revoke_session"
    GRANT_EXCEPTION = "grant_exception"
    END_EXCEPTION = "end_exception"  # the exception's window ended: undo the grant
    CONFIRM_DENIAL = "confirm_denial"
    CONFIRM_BENIGN = "confirm_benign"  # an analyst found the risk benign (Entra: dismiss the risky user)


class ActionMode(StrEnum):
    """How a vendor carries out an action kind (the capability map's values)."""

    RECORD = "record"  # glassgate records it in its own store only; nothing is sent to the vendor
    APPLY = "apply"  # the vendor's own operation (revoke sessions, group membership)
    SUSPEND = "suspend"  # confirm_denial on Okta: suspend the user
    CONFIRM_COMPROMISED = "confirm_compromised"  # confirm_denial on Entra: riskyUsers/confirmCompromised
    DISMISS = "dismiss"  # confirm_benign on Entra: riskyUsers/dismiss


class IamStatus(StrEnum):
    APPLIED = "applied"  # the vendor's state was changed by this call
    ALREADY_APPLIED = "already_applied"  # the vendor's state was already the target: nothing written
    TRANSIENT = "transient"  # nothing applied yet; try again at ``retry_at`` (429, 5xx, timeout)
    FAILED = "failed"  # the vendor refused (4xx, unknown user, missing permission): retrying cannot help


Ident = Annotated[str, Field(min_length=1, max_length=256)]


class IamRequest(BaseModel):
    """One action for an IAM system, derived from an approved proposal (or its exception's expiry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idempotency_key: Ident
    proposal_id: Ident
    action: IamAction
    user_id: Ident | None = None  # the subject, as glassgate knows it (the vendor's login or id)
    session_id: Ident | None = None
    resource_id: Ident | None = None
    decision_id: Ident | None = None
    window_start: AwareDatetime | None = None  # when the action was approved / the exception starts
    window_end: AwareDatetime | None = None  # when the exception ends
    approvers: tuple[str, ...] = ()
    reason: str = ""


class IamResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: IamStatus
    adapter: str
    detail: dict[str, Any] = Field(default_factory=dict)  # what the vendor was asked and answered
    retry_at: AwareDatetime | None = None  # TRANSIENT only: the earliest time worth another attempt
    error: str | None = None  # TRANSIENT / FAILED: why, for people

    @property
    def done(self) -> bool:
        return self.status in (IamStatus.APPLIED, IamStatus.ALREADY_APPLIED)


class Capabilities(BaseModel):
    """Which action kinds one vendor executes and how; a kind that is absent is recorded by glassgate only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    modes: Mapping[IamAction, ActionMode] = Field(default_factory=dict)

    def mode(self, action: IamAction) -> ActionMode:
        return self.modes.get(action, ActionMode.RECORD)


class IamAdapter(Protocol):
    """A vendor adapter: network calls only, bounded in time; never raises for a vendor's answer."""

    name: str
    capabilities: Capabilities

    def execute(self, request: IamRequest, *, now: datetime) -> IamResult:
        """Bring the vendor's state to what ``request`` asks, comparing before writing. Returns TRANSIENT
        (with ``retry_at``) when the vendor is unreachable or rate-limits beyond the in-call retry budget."""
        ...
