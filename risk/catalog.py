"""The feature catalog: every model feature, its factor family, label, unit and
known direction.

One list, in model column order. Everything that needs to know what a feature
means (features, model constraints, explanations, counterfactuals, rules,
timelines) reads it from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Family(StrEnum):
    IDENTITY = "identity"
    DEVICE = "device"
    BEHAVIOR = "behavior"
    NETWORK = "network"


FAMILY_LABELS = {
    Family.IDENTITY: "identity confidence",
    Family.DEVICE: "device posture",
    Family.BEHAVIOR: "session behavior",
    Family.NETWORK: "network context",
}


class Unit(StrEnum):
    BOOL = "bool"
    COUNT = "count"
    MINUTES = "min"
    DAYS = "days"
    KMH = "km/h"
    MB = "MB"
    PER_MIN = "req/min"
    RATIO = "x baseline"
    SHARE = "share"
    LEVEL = "level"


MFA_STRENGTH = {"none": 0, "sms": 1, "push": 2, "totp": 3, "webauthn": 4}
MFA_NAMES = {v: k for k, v in MFA_STRENGTH.items()}
ACTION_LEVEL_NAMES = {0: "read", 1: "write", 2: "export/delete/admin"}


@dataclass(frozen=True)
class Feature:
    """One model input.

    Attributes:
        name: column name, stable across model versions.
        family: the factor family it is reported under.
        label: human label used in explanations.
        unit: how its value is formatted.
        monotone: +1 if a larger value never lowers risk, -1 if it never
            raises it, 0 if the direction is not known in advance.
        optional: the raw signal may be missing; missing is reported, not
            imputed as benign.
        history: derived by glassgate from the user's profile or session.
    """

    name: str
    family: Family
    label: str
    unit: Unit
    monotone: int = 0
    optional: bool = False
    history: bool = False

    def format(self, value: float) -> str:
        """Format a value for people: "travel speed since previous login: 4,100 km/h"."""
        return f"{self.label}: {format_value(self, value)}"


def format_value(feature: Feature, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    u = feature.unit
    if feature.name == "mfa_strength":
        return MFA_NAMES.get(int(round(value)), str(value))
    if feature.name == "action_level":
        return ACTION_LEVEL_NAMES.get(int(round(value)), str(value))
    if u is Unit.BOOL:
        return "yes" if value >= 0.5 else "no"
    if u is Unit.SHARE:
        return f"{value * 100:.0f}%"
    if u is Unit.RATIO:
        return f"{value:,.1f}x the user's baseline"
    if u is Unit.MB:
        return f"{value:,.1f} MB"
    if u in (Unit.KMH, Unit.MINUTES, Unit.DAYS, Unit.COUNT, Unit.PER_MIN):
        return f"{value:,.0f} {u.value}" if u is not Unit.COUNT else f"{value:,.0f}"
    return f"{value:g}"


FEATURES: tuple[Feature, ...] = (
    # identity confidence
    Feature("mfa_strength", Family.IDENTITY, "MFA method", Unit.LEVEL, monotone=-1),
    Feature("minutes_since_mfa", Family.IDENTITY, "time since MFA", Unit.MINUTES, monotone=+1),
    Feature("failed_attempts_1h", Family.IDENTITY, "failed sign-in attempts in the last hour", Unit.COUNT, monotone=+1),
    Feature("privileged", Family.IDENTITY, "privileged account", Unit.BOOL, monotone=+1),
    # device posture
    Feature("device_managed", Family.DEVICE, "managed device", Unit.BOOL, monotone=-1),
    Feature("device_compliant", Family.DEVICE, "compliant device", Unit.BOOL, monotone=-1),
    Feature("edr_running", Family.DEVICE, "EDR running", Unit.BOOL, monotone=-1),
    Feature("disk_encrypted", Family.DEVICE, "disk encrypted", Unit.BOOL, monotone=-1, optional=True),
    Feature("os_patch_age_days", Family.DEVICE, "OS patch age", Unit.DAYS, monotone=+1, optional=True),
    Feature("new_device", Family.DEVICE, "device never seen for this user", Unit.BOOL, monotone=+1, history=True),
    Feature("posture_drop_in_session", Family.DEVICE, "posture controls lost since session start", Unit.COUNT, monotone=+1, history=True),
    # session behavior
    Feature("requests_per_min", Family.BEHAVIOR, "request rate", Unit.PER_MIN, monotone=+1),
    Feature("rate_vs_baseline", Family.BEHAVIOR, "request rate against the user's baseline", Unit.RATIO, monotone=+1, history=True),
    Feature("bytes_out_mb", Family.BEHAVIOR, "data sent out", Unit.MB, monotone=+1),
    Feature("bytes_vs_baseline", Family.BEHAVIOR, "data volume against the user's baseline", Unit.RATIO, monotone=+1, history=True),
    Feature("distinct_resources_1h", Family.BEHAVIOR, "distinct resources in the last hour", Unit.COUNT, monotone=+1),
    Feature("unusual_hour", Family.BEHAVIOR, "unusualness of this hour for the user", Unit.SHARE, monotone=+1, history=True),
    Feature("action_level", Family.BEHAVIOR, "action", Unit.LEVEL, monotone=+1),
    Feature("new_resource_kind", Family.BEHAVIOR, "first access to this kind of resource", Unit.BOOL, monotone=+1, history=True),
    # network context
    Feature("geo_velocity_kmh", Family.NETWORK, "travel speed since previous login", Unit.KMH, monotone=+1, history=True, optional=True),
    Feature("new_country", Family.NETWORK, "country never seen for this user", Unit.BOOL, monotone=+1, history=True),
    Feature("new_asn", Family.NETWORK, "network (ASN) never seen for this user", Unit.BOOL, monotone=+1, history=True),
    Feature("asn_changed_in_session", Family.NETWORK, "network changed within the session", Unit.BOOL, monotone=+1, history=True),
    Feature("is_vpn", Family.NETWORK, "VPN", Unit.BOOL, monotone=0, optional=True),
    Feature("is_tor", Family.NETWORK, "Tor exit node", Unit.BOOL, monotone=+1, optional=True),
    Feature("is_hosting", Family.NETWORK, "hosting-provider network", Unit.BOOL, monotone=+1, optional=True),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_INDEX: dict[str, int] = {n: i for i, n in enumerate(FEATURE_NAMES)}
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
MONOTONE: tuple[int, ...] = tuple(f.monotone for f in FEATURES)
FAMILIES: tuple[Family, ...] = tuple(Family)
FEATURE_FAMILY_INDEX: tuple[int, ...] = tuple(FAMILIES.index(f.family) for f in FEATURES)
