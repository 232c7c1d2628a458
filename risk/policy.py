"""Policy documents as data, and the engine that turns a risk score into an outcome.

A policy document is markdown with YAML front matter. The front matter may set
thresholds for a sensitivity tier or a resource kind, and hard rules: AND-ed
declarative conditions on signals that put a floor under the outcome. Rules
can only make an outcome stricter. Conditions are interpreted here, never
evaluated as code, and a missing signal (None or NaN) satisfies no condition:
it is not taken as benign, nor as malicious.

Every loaded document is checked against its own prose: each threshold's
section must state "step-up at **x**, deny at **y**" with the same numbers,
and each rule's section must name the rule id, so a cited passage never
contradicts the value the engine used.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from risk.catalog import BY_NAME, FEATURE_NAMES, Unit
from risk.events import ResourceKind, Sensitivity


class Outcome(StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"
    DENY = "deny"


OUTCOME_RANK = {Outcome.ALLOW: 0, Outcome.STEP_UP: 1, Outcome.DENY: 2}
RANK_OUTCOME = (Outcome.ALLOW, Outcome.STEP_UP, Outcome.DENY)


def worst(*outcomes: Outcome) -> Outcome:
    """The strictest of the outcomes; ALLOW when none are given."""
    return Outcome(max(outcomes, key=OUTCOME_RANK.__getitem__, default=Outcome.ALLOW))


class PolicyError(ValueError):
    """A policy document (or the set of them) is invalid.

    Attributes:
        file: the document's file name (or the directory, for set-wide problems).
        field: dotted path to the offending field, e.g. ``rules[2].when.device_manged``.
        message: what is wrong with it.
    """

    def __init__(self, file: str, field: str, message: str):
        self.file, self.field, self.message = file, field, message
        super().__init__(f"{file}: {field}: {message}")


class _Invalid(Exception):
    """A field error inside one document; the loader adds the file name."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message


# --- signals and conditions -------------------------------------------------

_STRING_SIGNALS: dict[str, frozenset[str] | None] = {
    "resource.kind": frozenset(ResourceKind),
    "resource.sensitivity": frozenset(Sensitivity),
    "activity.action": None,  # free text, validated by the event schema
}
_BOOL_SIGNALS = frozenset({"user.privileged"} | {f.name for f in BY_NAME.values() if f.unit is Unit.BOOL})
SIGNAL_NAMES: tuple[str, ...] = (
    *FEATURE_NAMES,
    "resource.kind",
    "resource.sensitivity",
    "user.privileged",
    "activity.action",
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne,
    "in": lambda v, e: v in e, "not_in": lambda v, e: v not in e,
    "gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt,
}  # fmt: skip
_ORDERED = frozenset({"gte", "gt", "lte", "lt"})


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _parse_value(signal: str, v: Any, where: str, *, ordered: bool) -> str | float:
    if signal in _STRING_SIGNALS:
        allowed = _STRING_SIGNALS[signal]
        if ordered:
            raise _Invalid(where, f"{signal} is not numeric; use eq, ne, in or not_in")
        if not isinstance(v, str) or not v:
            raise _Invalid(where, f"expected a non-empty string, got {_type_name(v)}")
        if allowed is not None and v not in allowed:
            raise _Invalid(where, f"{v!r} is not one of {', '.join(sorted(allowed))}")
        return v
    if ordered and (signal in _BOOL_SIGNALS or isinstance(v, bool)):
        raise _Invalid(where, f"ordered comparison needs a number on a numeric signal, got {_type_name(v)}")
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if not isinstance(v, int | float) or not math.isfinite(v):
        raise _Invalid(where, f"expected a number or true/false, got {_type_name(v)} {v!r}")
    if signal in _BOOL_SIGNALS and v not in (0, 1):
        raise _Invalid(where, f"{signal} is true/false, got {v!r}")
    return float(v)


def _parse_condition(signal: str, cond: Any, where: str) -> Mapping[str, Any]:
    """Normalise one condition to ``{op: value}`` (``in``/``not_in`` values as tuples)."""
    if signal not in SIGNAL_NAMES:
        raise _Invalid(where, "unknown signal")
    if not isinstance(cond, dict):
        return {"eq": _parse_value(signal, cond, where, ordered=False)}
    if not cond:
        raise _Invalid(where, "empty condition")
    out: dict[str, Any] = {}
    for op, v in cond.items():
        w = f"{where}.{op}"
        if op not in _OPS:
            raise _Invalid(w, f"unknown operator (use one of {', '.join(_OPS)})")
        if op in ("in", "not_in"):
            if not isinstance(v, list) or not v:
                raise _Invalid(w, f"expected a non-empty list, got {_type_name(v)}")
            out[op] = tuple(_parse_value(signal, x, f"{w}[{i}]", ordered=False) for i, x in enumerate(v))
        else:
            out[op] = _parse_value(signal, v, w, ordered=op in _ORDERED)
    return out


def _signal_value(signal: str, value: Any) -> str | float | None:
    """The value to compare, or None when the signal is missing."""
    if value is None:
        return None
    if signal in _STRING_SIGNALS:
        if isinstance(value, numbers.Real) and math.isnan(value):  # any float NaN, numpy's included
            return None
        if not isinstance(value, str):
            raise TypeError(f"signal {signal} must be a string, got {_type_name(value)}")
        return str(value)
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if not isinstance(value, numbers.Real):
        raise TypeError(f"signal {signal} must be a number, got {_type_name(value)}")
    f = float(value)
    return None if math.isnan(f) else f


def condition_holds(signal: str, cond: Mapping[str, Any], value: Any) -> bool:
    """Whether a normalised condition holds for one signal value; never for a missing value."""
    v = _signal_value(signal, value)
    return v is not None and all(_OPS[op](v, expected) for op, expected in cond.items())


# --- documents --------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    policy_id: str
    policy_version: int
    effect: Outcome
    description: str
    section: str
    when: Mapping[str, Mapping[str, Any]]  # signal -> {op: value}, normalised

    def matches(self, signals: Mapping[str, Any]) -> bool:
        """All conditions hold; an absent key counts as a missing signal."""
        return all(condition_holds(s, c, signals.get(s)) for s, c in self.when.items())


@dataclass(frozen=True)
class ThresholdEntry:
    policy_id: str
    policy_version: int
    scope: str  # "tier:restricted" or "kind:ot"
    step_up_at: float
    deny_at: float
    section: str


@dataclass(frozen=True)
class PolicyDoc:
    id: str
    version: int
    title: str
    owner_group: str
    effective: date
    path: str
    body: str
    sections: dict[str, tuple[str, str]]  # anchor -> (heading, text)
    thresholds: tuple[ThresholdEntry, ...]
    rules: tuple[Rule, ...]
    content_hash: str
    text: str  # the whole file, front matter included
    approvals: Mapping[str, Any] | None = None  # approval rules for proposed actions, normalised (see _parse_approvals)


@dataclass(frozen=True)
class RuleMatch:
    rule_id: str
    policy_id: str
    policy_version: int
    effect: Outcome
    description: str
    section: str


@dataclass(frozen=True)
class PolicyDecision:
    outcome: Outcome
    threshold: ThresholdEntry
    threshold_outcome: Outcome
    rule_floor: Outcome
    rules: tuple[RuleMatch, ...]


_DOC_KEYS = {"id", "version", "title", "owner_group", "effective", "thresholds", "rules", "approvals"}
_APPROVAL_KEYS = {"default_expiry_minutes", "kinds"}
_APPROVAL_KIND_KEYS = {"roles", "approvers", "max_duration_hours", "api_only_tiers", "section"}
APPROVER_ROLES = frozenset({"analyst", "policy_owner", "ingest", "admin"})
_KIND_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_THRESHOLD_KEYS = {"tier", "kind", "step_up_at", "deny_at", "section"}
_RULE_KEYS = {"id", "effect", "description", "section", "when"}
_POLICY_ID = re.compile(r"^POL-[A-Z]+-\d{3}$")
_RULE_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_HEADING = re.compile(r"^##[ \t]+(.+?)[ \t]*#*[ \t]*$")
_NUM = r"([0-9]*\.?[0-9]+)"
_STATED = re.compile(rf"step-up at \*\*{_NUM}\*\*, deny at \*\*{_NUM}\*\*", re.IGNORECASE)


def slugify(heading: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        raise _Invalid("front matter", "the file must start with a '---' line")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        raise _Invalid("front matter", "no closing '---' line")
    try:
        fm = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise _Invalid("front matter", f"invalid YAML: {exc}") from None
    if not isinstance(fm, dict):
        raise _Invalid("front matter", "must be a mapping")
    return fm, "".join(lines[end + 1 :])


def _section_spans(body: str) -> list[tuple[str, str, int, int]]:
    """(anchor, heading, start, end) of every ``##`` section; text = body[start:end]."""
    spans: list[tuple[str, str, int, int]] = []
    pos, fence = 0, False
    open_: tuple[str, str, int] | None = None
    for line in body.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        m = None if fence else _HEADING.match(line.rstrip("\r\n"))
        if m:
            if open_:
                spans.append((*open_, pos))
            open_ = (slugify(m.group(1)), m.group(1), pos + len(line))
        pos += len(line)
    if open_:
        spans.append((*open_, pos))
    return spans


def _require(fm: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    v = fm.get(key)
    if v is None:
        raise _Invalid(f"{where}{key}", "required field is missing")
    if not isinstance(v, kind) or isinstance(v, bool) or (isinstance(v, str) and not v.strip()):
        raise _Invalid(f"{where}{key}", f"wrong type {_type_name(v)}")
    return v


def _check_keys(m: Any, allowed: set[str], where: str) -> None:
    if not isinstance(m, dict):
        raise _Invalid(where or "front matter", "must be a mapping")
    for k in m:
        if k not in allowed:
            raise _Invalid(f"{where}.{k}" if where else str(k), "unknown field")


def _fmt(x: float) -> str:
    s = f"{x:.2f}"
    return s if float(s) == x else repr(float(x))


def _parse_thresholds(
    fm: Mapping[str, Any], pid: str, ver: int, sections: Mapping[str, tuple[str, str]]
) -> tuple[ThresholdEntry, ...]:
    raw = fm.get("thresholds") or []
    if not isinstance(raw, list):
        raise _Invalid("thresholds", "must be a list")
    out = []
    for i, t in enumerate(raw):
        w = f"thresholds[{i}]"
        _check_keys(t, _THRESHOLD_KEYS, w)
        if ("tier" in t) == ("kind" in t):
            raise _Invalid(w, "needs exactly one of tier or kind")
        key, enum = ("tier", Sensitivity) if "tier" in t else ("kind", ResourceKind)
        if not isinstance(t[key], str) or t[key] not in set(enum):
            raise _Invalid(f"{w}.{key}", f"{t[key]!r} is not one of {', '.join(enum)}")
        su, dn = (_require(t, k, (int, float), f"{w}.") for k in ("step_up_at", "deny_at"))
        for k, v in (("step_up_at", su), ("deny_at", dn)):
            if not 0.0 <= v <= 1.0:
                raise _Invalid(f"{w}.{k}", f"{v} is outside [0, 1]")
        if su >= dn:
            raise _Invalid(f"{w}.step_up_at", f"step_up_at {su} must be below deny_at {dn}")
        section = _require(t, "section", str, f"{w}.")
        if section not in sections:
            raise _Invalid(f"{w}.section", f"no section with anchor {section!r}")
        stated = _STATED.findall(sections[section][1])
        if len(stated) != 1 or (float(stated[0][0]), float(stated[0][1])) != (su, dn):
            raise _Invalid(
                f"{w}.section",
                f"section {section!r} must state 'step-up at **{_fmt(su)}**, deny at **{_fmt(dn)}**' once",
            )
        out.append(ThresholdEntry(pid, ver, f"{key}:{t[key]}", float(su), float(dn), section))
    return tuple(out)


def _parse_rules(
    fm: Mapping[str, Any], pid: str, ver: int, sections: Mapping[str, tuple[str, str]]
) -> tuple[Rule, ...]:
    raw = fm.get("rules") or []
    if not isinstance(raw, list):
        raise _Invalid("rules", "must be a list")
    out: list[Rule] = []
    for i, r in enumerate(raw):
        w = f"rules[{i}]"
        _check_keys(r, _RULE_KEYS, w)
        rid = _require(r, "id", str, f"{w}.")
        if not _RULE_ID.match(rid):
            raise _Invalid(f"{w}.id", f"{rid!r} is not kebab-case")
        if any(x.id == rid for x in out):
            raise _Invalid(f"{w}.id", f"duplicate rule id {rid!r}")
        effect = _require(r, "effect", str, f"{w}.")
        if effect not in (Outcome.STEP_UP, Outcome.DENY):
            raise _Invalid(f"{w}.effect", f"{effect!r} is not step_up or deny")
        desc = _require(r, "description", str, f"{w}.")
        section = _require(r, "section", str, f"{w}.")
        if section not in sections:
            raise _Invalid(f"{w}.section", f"no section with anchor {section!r}")
        if rid not in sections[section][1]:
            raise _Invalid(f"{w}.section", f"section {section!r} does not name rule {rid!r}")
        when = r.get("when")
        if not isinstance(when, dict) or not when:
            raise _Invalid(f"{w}.when", "must be a non-empty mapping of signal to condition")
        conds = {s: _parse_condition(s, c, f"{w}.when.{s}") for s, c in when.items()}
        out.append(Rule(rid, pid, ver, Outcome(effect), desc.strip(), section, conds))
    return tuple(out)


def _str_list(v: Any, where: str, allowed: Iterable[str]) -> list[str]:
    allowed = frozenset(allowed)
    if not isinstance(v, list) or not v:
        raise _Invalid(where, f"expected a non-empty list, got {_type_name(v)}")
    for i, x in enumerate(v):
        if not isinstance(x, str) or x not in allowed:
            raise _Invalid(f"{where}[{i}]", f"{x!r} is not one of {', '.join(sorted(allowed))}")
    if len(set(v)) != len(v):
        raise _Invalid(where, "duplicate entries")
    return list(v)


def _parse_approvals(fm: Mapping[str, Any], sections: Mapping[str, tuple[str, str]]) -> dict[str, Any] | None:
    """The ``approvals`` block, normalised: who may approve each kind of proposed action, and for how long.

    Shape: ``{"default_expiry_minutes": int, "kinds": {kind: {"roles": [...], "approvers": int,
    "max_duration_hours"?: float, "api_only_tiers"?: [...], "section"?: anchor}}}``.
    The engine does not enforce these; the agent does.
    """
    raw = fm.get("approvals")
    if raw is None:
        return None
    _check_keys(raw, _APPROVAL_KEYS, "approvals")
    expiry = _require(raw, "default_expiry_minutes", int, "approvals.")
    if expiry <= 0:
        raise _Invalid("approvals.default_expiry_minutes", "must be 1 or more")
    kinds = raw.get("kinds")
    if not isinstance(kinds, dict) or not kinds:
        raise _Invalid("approvals.kinds", "must be a non-empty mapping of action kind to its approval rule")
    out: dict[str, dict[str, Any]] = {}
    for kind, spec in kinds.items():
        w = f"approvals.kinds.{kind}"
        if not isinstance(kind, str) or not _KIND_NAME.match(kind):
            raise _Invalid(w, f"{kind!r} is not a snake_case action kind")
        _check_keys(spec, _APPROVAL_KIND_KEYS, w)
        rule: dict[str, Any] = {"roles": _str_list(spec.get("roles"), f"{w}.roles", APPROVER_ROLES)}
        rule["approvers"] = _require(spec, "approvers", int, f"{w}.")
        if rule["approvers"] < 1:
            raise _Invalid(f"{w}.approvers", "must be 1 or more")
        if "max_duration_hours" in spec:
            hours = spec["max_duration_hours"]
            if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours < math.inf:
                raise _Invalid(f"{w}.max_duration_hours", f"expected a number above 0, got {hours!r}")
            rule["max_duration_hours"] = float(hours)
        if "api_only_tiers" in spec:
            rule["api_only_tiers"] = _str_list(spec["api_only_tiers"], f"{w}.api_only_tiers", Sensitivity)
        if "section" in spec:
            section = spec["section"]
            if not isinstance(section, str) or section not in sections:
                raise _Invalid(f"{w}.section", f"no section with anchor {section!r}")
            rule["section"] = section
        out[kind] = rule
    return {"default_expiry_minutes": expiry, "kinds": out}


def _parse_doc(text: str, name: str) -> PolicyDoc:
    try:
        fm, body = _split_front_matter(text)
        _check_keys(fm, _DOC_KEYS, "")
        pid = _require(fm, "id", str)
        if not _POLICY_ID.match(pid):
            raise _Invalid("id", f"{pid!r} does not look like POL-AREA-NNN")
        ver = _require(fm, "version", int)
        if ver < 1:
            raise _Invalid("version", "must be 1 or more")
        eff = fm.get("effective")
        if isinstance(eff, str):
            try:
                eff = date.fromisoformat(eff)
            except ValueError:
                raise _Invalid("effective", f"{eff!r} is not an ISO date") from None
        if not isinstance(eff, date) or isinstance(eff, datetime):
            raise _Invalid("effective", "required, as an ISO date (YYYY-MM-DD)")
        sections: dict[str, tuple[str, str]] = {}
        for anchor, heading, start, end in _section_spans(body):
            if anchor in sections:
                raise _Invalid(f"sections.{anchor}", "duplicate heading")
            sections[anchor] = (heading, body[start:end].strip())
        return PolicyDoc(
            id=pid, version=ver, title=_require(fm, "title", str).strip(),
            owner_group=_require(fm, "owner_group", str).strip(), effective=eff, path=name, body=body,
            sections=sections, thresholds=_parse_thresholds(fm, pid, ver, sections),
            rules=_parse_rules(fm, pid, ver, sections),
            content_hash=hashlib.sha256(text.encode()).hexdigest(), text=text,
            approvals=_parse_approvals(fm, sections),
        )  # fmt: skip
    except _Invalid as e:
        raise PolicyError(name, e.field, e.message) from None


# --- the set ----------------------------------------------------------------


def outcome_for(risk: float, step_up_at: float, deny_at: float) -> Outcome:
    """Threshold outcome: risk >= deny_at denies, >= step_up_at steps up. NaN risk raises."""
    if not 0.0 <= step_up_at < deny_at <= 1.0:
        raise ValueError(f"bad thresholds: step_up_at={step_up_at}, deny_at={deny_at}")
    if math.isnan(risk):
        raise ValueError("risk is NaN")  # comparing NaN would silently allow
    return Outcome.DENY if risk >= deny_at else Outcome.STEP_UP if risk >= step_up_at else Outcome.ALLOW


def outcomes_for(risk: np.ndarray, step_up_at: float, deny_at: float) -> np.ndarray:
    """Vectorised :func:`outcome_for`: int8 ranks (0 allow, 1 step-up, 2 deny)."""
    if not 0.0 <= step_up_at < deny_at <= 1.0:
        raise ValueError(f"bad thresholds: step_up_at={step_up_at}, deny_at={deny_at}")
    r = np.asarray(risk, dtype=float)
    if np.isnan(r).any():
        raise ValueError("risk contains NaN")
    return ((r >= step_up_at).astype(np.int8) + (r >= deny_at).astype(np.int8)).astype(np.int8)


def _scope_order(scope: str) -> tuple[int, int]:
    key, value = scope.split(":", 1)
    return (
        (0, list(Sensitivity).index(Sensitivity(value)))
        if key == "tier"
        else (1, list(ResourceKind).index(ResourceKind(value)))
    )


class PolicySet:
    """A validated set of policy documents: one owner per threshold scope, unique rule ids, every tier covered."""

    def __init__(self, docs: Iterable[PolicyDoc], *, source: str = "policies"):
        self.docs: tuple[PolicyDoc, ...] = tuple(sorted(docs, key=lambda d: d.id))
        self._source = source
        self._by_id: dict[str, PolicyDoc] = {}
        self._scopes: dict[str, ThresholdEntry] = {}
        rule_owner: dict[str, PolicyDoc] = {}
        for d in self.docs:
            if d.id in self._by_id:
                raise PolicyError(d.path, "id", f"{d.id} is also the id of {self._by_id[d.id].path}")
            self._by_id[d.id] = d
            for i, t in enumerate(d.thresholds):
                if t.scope in self._scopes:
                    owner = self._by_id[self._scopes[t.scope].policy_id]
                    raise PolicyError(
                        d.path, f"thresholds[{i}].{t.scope.split(':')[0]}", f"{t.scope} is already set by {owner.path}"
                    )
                self._scopes[t.scope] = t
            for i, r in enumerate(d.rules):
                if r.id in rule_owner:
                    raise PolicyError(
                        d.path, f"rules[{i}].id", f"rule id {r.id!r} is already used in {rule_owner[r.id].path}"
                    )
                rule_owner[r.id] = d
        for tier in Sensitivity:
            if f"tier:{tier}" not in self._scopes:
                raise PolicyError(source, "thresholds", f"no document sets thresholds for tier {tier}")
        self._rules: tuple[Rule, ...] = tuple(r for d in self.docs for r in d.rules)

    def get(self, policy_id: str) -> PolicyDoc:
        """The document with this id; KeyError if there is none."""
        return self._by_id[policy_id]

    def scopes(self) -> list[ThresholdEntry]:
        """Every threshold entry, tiers in sensitivity order, then kinds."""
        return sorted(self._scopes.values(), key=lambda t: _scope_order(t.scope))

    def version_key(self) -> str:
        """``POL-ACCESS-001@1,POL-AUTH-003@1,...``, sorted by id."""
        return ",".join(f"{d.id}@{d.version}" for d in self.docs)

    def threshold_for(self, *, kind: str, sensitivity: str) -> ThresholdEntry:
        """The thresholds in force: a resource-kind entry beats the tier entry."""
        kind, sensitivity = ResourceKind(kind), Sensitivity(sensitivity)
        return self._scopes.get(f"kind:{kind}") or self._scopes[f"tier:{sensitivity}"]

    def match_rules(self, signals: Mapping[str, Any]) -> tuple[RuleMatch, ...]:
        """Rules whose conditions all hold, in policy-id then document order."""
        return tuple(
            RuleMatch(r.id, r.policy_id, r.policy_version, r.effect, r.description, r.section)
            for r in self._rules
            if r.matches(signals)
        )

    def decide(self, *, risk: float, signals: Mapping[str, Any]) -> PolicyDecision:
        """Outcome = the stricter of the threshold outcome and the strictest matching rule."""
        kind, sens = signals.get("resource.kind"), signals.get("resource.sensitivity")
        if kind is None or sens is None:
            raise ValueError("signals must carry resource.kind and resource.sensitivity")
        entry = self.threshold_for(kind=kind, sensitivity=sens)
        by_threshold = outcome_for(risk, entry.step_up_at, entry.deny_at)
        matches = self.match_rules(signals)
        floor = worst(*(m.effect for m in matches))
        return PolicyDecision(worst(by_threshold, floor), entry, by_threshold, floor, matches)

    def with_thresholds(
        self, *, policy_id: str, scope: str, step_up_at: float, deny_at: float, effective: date | None = None
    ) -> PolicySet:
        """A new set in which ``policy_id`` sets these thresholds for ``scope``, at version + 1.

        The document text is rewritten (front matter and the sentence stating the
        thresholds) and parsed again, so the new version is validated exactly as a
        loaded one, and its text can be stored as the approved document.
        """
        doc = self.get(policy_id)
        fm, body = _split_front_matter(doc.text)
        idx = next((i for i, t in enumerate(doc.thresholds) if t.scope == scope), None)
        if idx is None:
            raise PolicyError(doc.path, "thresholds", f"{policy_id} sets no thresholds for {scope}")
        fm["thresholds"][idx].update(step_up_at=float(step_up_at), deny_at=float(deny_at))
        fm["version"] = doc.version + 1
        if effective is not None:
            fm["effective"] = effective
        _, _, start, end = next(s for s in _section_spans(body) if s[0] == doc.thresholds[idx].section)
        stated = _STATED.sub(
            f"step-up at **{_fmt(step_up_at)}**, deny at **{_fmt(deny_at)}**", body[start:end], count=1
        )
        text = (
            "---\n"
            + yaml.safe_dump(fm, sort_keys=False, allow_unicode=True)
            + "---\n"
            + body[:start]
            + stated
            + body[end:]
        )
        new = _parse_doc(text, doc.path)
        return PolicySet((new if d.id == policy_id else d for d in self.docs), source=self._source)


def load_policies(directory: Path) -> PolicySet:
    """Load and validate every ``*.md`` policy document in ``directory``.

    Raises:
        PolicyError: naming the file and the field path of the first problem found.
    """
    directory = Path(directory)
    files = sorted(directory.glob("*.md"))
    docs = []
    for p in files:
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(p.name, "file", f"not UTF-8: {exc}") from None
        docs.append(_parse_doc(text, p.name))
    return PolicySet(docs, source=directory.name or str(directory))


def parse_policy(text: str, name: str) -> PolicyDoc:
    """Parse one policy document's text (``name`` is used in error messages), validated like a loaded file."""
    return _parse_doc(text, name)
