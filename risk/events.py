"""The native access event (DESIGN.md), validated strictly.

Unknown fields, wrong types, out-of-range values and impossible combinations
are rejected with every bad field named. Nothing downstream sees an event
that did not pass here.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

Ident = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")]
NonNegInt = Annotated[int, Field(ge=0, le=10_000_000)]


class MfaMethod(StrEnum):
    WEBAUTHN = "webauthn"
    PUSH = "push"
    TOTP = "totp"
    SMS = "sms"
    NONE = "none"


class ResourceKind(StrEnum):
    SAAS = "saas"
    DATABASE = "database"
    CLOUD_API = "cloud_api"
    OT = "ot"
    ADMIN_CONSOLE = "admin_console"


class Sensitivity(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


SENSITIVITY_LEVEL = {s: i for i, s in enumerate(Sensitivity)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class User(_Strict):
    id: Ident
    roles: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=64)]
    privileged: bool


class Device(_Strict):
    id: Ident
    managed: bool
    compliant: bool
    edr_running: bool
    disk_encrypted: bool | None = None
    os_patch_age_days: Annotated[int, Field(ge=0, le=36_500)] | None = None
    user_agent: Annotated[str, Field(max_length=1024)] | None = None


class Network(_Strict):
    ip: Annotated[str, Field(min_length=2, max_length=45, pattern=r"^[0-9A-Fa-f:.]+$")]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    asn: Annotated[int, Field(ge=0, le=4_294_967_295)]
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float | None, Field(ge=-180, le=180, validate_default=True)] = None
    is_vpn: bool | None = None
    is_tor: bool | None = None
    is_hosting: bool | None = None

    @field_validator("lat", "lon", mode="before")
    @classmethod
    def _int_is_a_float(cls, v: Any) -> Any:
        # JSON has one number type: 52 is as good a latitude as 52.0.
        if isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        return v

    @field_validator("lon", mode="after")
    @classmethod
    def _lat_lon_together(cls, v: float | None, info: ValidationInfo) -> float | None:
        if "lat" not in info.data:  # lat itself was invalid and is reported already
            return v
        if (info.data["lat"] is None) != (v is None):
            raise ValueError("lat and lon must be given together or not at all")
        return v


class Auth(_Strict):
    mfa_method: Annotated[MfaMethod, Field(strict=False)]
    minutes_since_mfa: NonNegInt
    failed_attempts_1h: NonNegInt


class Resource(_Strict):
    id: Ident
    kind: Annotated[ResourceKind, Field(strict=False)]
    sensitivity: Annotated[Sensitivity, Field(strict=False)]


class Activity(_Strict):
    action: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")]
    requests_per_min: NonNegInt
    bytes_out: Annotated[int, Field(ge=0, le=10**15)]
    distinct_resources_1h: NonNegInt


class AccessEvent(_Strict):
    event_id: Ident
    timestamp: datetime
    session_id: Ident
    user: User
    device: Device
    network: Network
    auth: Auth
    resource: Resource
    activity: Activity

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, v: Any) -> Any:
        if not isinstance(v, str):
            raise ValueError("must be an RFC 3339 string with a time zone")
        try:
            ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 timestamp: {exc}") from None
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("timestamp has no time zone; add 'Z' or an offset")
        try:
            utc = ts.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp is out of range") from None
        if not 1970 <= utc.year <= 2200:
            raise ValueError(f"timestamp is out of range: year {utc.year} (1970 to 2200)")
        return utc

    def canonical(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, timestamps normalised to UTC 'Z'."""
        d = self.model_dump(mode="json", exclude_none=True)
        d["timestamp"] = self.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return d

    def content_hash(self) -> str:
        """Hash of the canonical form: the same event always hashes the same."""
        return hashlib.sha256(canonical_json(self.canonical()).encode()).hexdigest()

    @property
    def ts(self) -> float:
        return self.timestamp.timestamp()


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class FieldError(BaseModel):
    field: str
    message: str


class EventValidationError(ValueError):
    """An event was rejected. ``fields`` names every bad field with its reason."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        msg = "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(f"invalid event: {msg}")

    @property
    def fields(self) -> list[str]:
        return [e.field for e in self.errors]


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return ".".join(parts) or "(event)"


def parse_event(raw: Any) -> AccessEvent:
    """Validate one native event.

    Args:
        raw: the decoded JSON object.

    Raises:
        EventValidationError: naming each bad field and why.
    """
    if not isinstance(raw, dict):
        raise EventValidationError([FieldError(field="(event)", message="must be a JSON object")])
    try:
        return AccessEvent.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for e in exc.errors(include_url=False):
            field = _loc(tuple(e["loc"]))
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown field"
            elif e["type"] == "missing":
                msg = "required field is missing"
            msg = msg.removeprefix("Value error, ")
            errors.append(FieldError(field=field, message=msg))
        raise EventValidationError(errors) from None
