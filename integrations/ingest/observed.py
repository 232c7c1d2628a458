"""What a vendor decided, and the checked draft of the native event its log line maps to.

A mapping reads the vendor's JSON through :class:`Src` (every read names its vendor path, so a bad value is
refused naming the vendor's own field) and writes the native event through :class:`Draft` (every native field
remembers which vendor field it came from, or that the vendor does not send it and what glassgate assumed).
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from risk.events import AccessEvent, EventValidationError, canonical_json, parse_event


class Vendor(StrEnum):
    OKTA = "okta"
    ENTRA = "entra"
    OCSF = "ocsf"


VENDOR_NAMES = {Vendor.OKTA: "Okta", Vendor.ENTRA: "Microsoft Entra", Vendor.OCSF: "the OCSF source"}


class VendorOutcome(StrEnum):
    ALLOW = "allow"
    CHALLENGE = "challenge"
    DENY = "deny"


# The native outcome a vendor outcome corresponds to (glassgate's step-up is the vendor's challenge).
NATIVE_OUTCOME = {VendorOutcome.ALLOW: "allow", VendorOutcome.CHALLENGE: "step_up", VendorOutcome.DENY: "deny"}

RiskLevel = Literal["none", "low", "medium", "high", "critical"]
FamilyName = Literal["identity", "device", "behavior", "network"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reason(_Frozen):
    """A reason the vendor stated, and the factor family it belongs to (None: glassgate has no family for it)."""

    text: str
    family: FamilyName | None
    source: str  # the vendor field it was read from


class VendorPolicy(_Frozen):
    """A policy or rule the vendor evaluated; ``decided`` marks the one that set the outcome."""

    id: str | None = None
    name: str
    result: str | None = None
    controls: list[str] = Field(default_factory=list)
    decided: bool = False


class MissingField(_Frozen):
    """A native signal the vendor does not send: named, with what glassgate assumed in its place (if anything)."""

    field: str
    why: str
    assumed: bool | int | float | str | list[str] | None = None


class Observed(_Frozen):
    """The vendor's own decision about an event glassgate scores in shadow."""

    vendor: Vendor
    vendor_event_id: str
    event_type: str
    outcome: VendorOutcome
    failure: bool = Field(description="a failed credential check (counted towards failed attempts)")
    status_detail: str | None = None
    risk_level: RiskLevel | None = None
    reasons: list[Reason] = Field(default_factory=list)
    policies: list[VendorPolicy] = Field(default_factory=list)
    missing: list[MissingField] = Field(default_factory=list)

    @property
    def deciding_rule(self) -> str:
        p = next((p for p in self.policies if p.decided), None)
        return p.name if p else ""


class VendorFieldProblem(_Frozen):
    field: str  # the vendor's own path, e.g. outcome.result
    message: str


class VendorFieldError(ValueError):
    """A vendor record that cannot be mapped; ``errors`` names each vendor field and why. Nothing is stored."""

    def __init__(self, vendor: Vendor, errors: list[VendorFieldProblem]):
        self.vendor, self.errors = vendor, errors
        super().__init__(f"unmappable {vendor.value} record: " + "; ".join(f"{e.field}: {e.message}" for e in errors))

    @property
    def fields(self) -> list[str]:
        return [e.field for e in self.errors]


class Mapped(BaseModel):
    """A vendor record mapped: the native event (validated), the vendor's decision, the raw record's hash."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event: AccessEvent
    observed: Observed
    raw_hash: str


_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
               list: "a list"}


class Src:
    """Typed reads from a vendor record; a wrong type is refused naming the vendor path."""

    def __init__(self, vendor: Vendor, raw: dict[str, Any], prefix: str = ""):
        self.vendor, self.raw, self.prefix = vendor, raw, prefix

    def path(self, p: str) -> str:
        return self.prefix + p

    def fail(self, p: str, message: str) -> VendorFieldError:
        return VendorFieldError(self.vendor, [VendorFieldProblem(field=self.path(p), message=message)])

    def get(self, p: str, typ: type | tuple[type, ...], *, required: bool = False, within: Any = None) -> Any:
        cur: Any = self.raw if within is None else within
        for part in p.split("."):
            if not isinstance(cur, dict):
                cur = _MISSING
                break
            cur = cur.get(part, _MISSING)
        if cur is _MISSING or cur is None:
            if required:
                raise self.fail(p, "required field is missing")
            return None
        types = typ if isinstance(typ, tuple) else (typ,)
        ok = isinstance(cur, types) and not (isinstance(cur, bool) and bool not in types)
        if float in types and isinstance(cur, int) and not isinstance(cur, bool):
            ok, cur = True, float(cur)
        if not ok:
            raise self.fail(p, "must be " + " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types))
        if isinstance(cur, str) and required and not cur.strip():
            raise self.fail(p, "must not be empty")
        return cur


IDENT_BAD = re.compile(r"[^A-Za-z0-9._:@/+-]")


def ident(text: str, *, prefix: str = "") -> str:
    """A vendor name or id as a native identifier (letters, digits and ._:@/+- ; at most 128 characters)."""
    s = IDENT_BAD.sub("-", text.strip()).strip("-._:@/+") or "unknown"
    s = prefix + s
    if len(s) > 128:
        s = s[:111] + "-" + hashlib.sha256(s.encode()).hexdigest()[:16]
    return s


class Draft:
    """The native event being built; each field remembers its vendor source, or is named as missing."""

    def __init__(self, src: Src):
        self.src = src
        self.data: dict[str, Any] = {k: {} for k in ("user", "device", "network", "auth", "resource", "activity")}
        self.sources: dict[str, str] = {}
        self.missing: list[MissingField] = []

    def set(self, native: str, value: Any, source: str | None) -> None:
        head, _, tail = native.partition(".")
        if tail:
            self.data[head][tail] = value
        else:
            self.data[head] = value
        if source:
            self.sources[native] = self.src.path(source)

    def assume(self, native: str, value: Any, why: str) -> None:
        """The vendor does not send ``native``: record it as missing (with the value assumed, if required)."""
        if value is not None:
            self.set(native, value, None)
        self.missing.append(MissingField(field=native, why=why, assumed=value))

    def build(self) -> AccessEvent:
        try:
            return parse_event(self.data)
        except EventValidationError as exc:
            problems = [VendorFieldProblem(field=self._vendor_field(e.field), message=f"{e.message} (maps to {e.field})")
                        for e in exc.errors]
            raise VendorFieldError(self.src.vendor, problems) from None

    def _vendor_field(self, native: str) -> str:
        while native:
            if native in self.sources:
                return self.sources[native]
            native = native.rpartition(".")[0]
        return "(record)"


def raw_hash(raw: Any) -> str:
    return hashlib.sha256(canonical_json(raw).encode()).hexdigest()


LEVELS: dict[str, RiskLevel] = {"none": "none", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
