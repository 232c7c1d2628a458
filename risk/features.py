"""Feature engineering with per-user baselines: one implementation, two paths.

Every feature vector is computed by :func:`compute_features` from two column
sets: the *raw* signals of the events themselves and the *history* each event
is judged against (what the user and the session did before it). The online
path reads history from a persisted :class:`UserProfile` and
:class:`SessionState`, one event at a time; the batch path derives the same
history for a whole time-ordered frame with vectorised group operations. A
test holds the two to bit-identical vectors, because training/serving skew is
the classic way a risk model silently goes wrong.

Ordering contract: events are processed in the order given; ties in time keep
that order in both paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from risk.catalog import FEATURE_NAMES, MFA_STRENGTH
from risk.events import AccessEvent

MIN_BASELINE_EVENTS = 5  # below this the user's own baseline is reported as missing
LOCATION_NOISE_KM = 50.0  # IP geolocation is city-level; smaller jumps are not travel
MIN_TRAVEL_HOURS = 1.0 / 60.0
EARTH_RADIUS_KM = 6371.0088

READ_ACTIONS = frozenset({"read", "list", "view", "login", "query", "get", "search"})
WRITE_ACTIONS = frozenset({"write", "update", "create", "upload", "comment", "edit"})

RAW_COLUMNS = (
    "ts", "hour", "mfa_strength", "minutes_since_mfa", "failed_attempts_1h", "privileged",
    "device_managed", "device_compliant", "edr_running", "disk_encrypted", "os_patch_age_days",
    "requests_per_min", "bytes_out", "distinct_resources_1h", "action_level",
    "lat", "lon", "asn", "is_vpn", "is_tor", "is_hosting", "posture",
)
KEY_COLUMNS = ("user", "session", "device", "country", "kind")


def action_level(action: str) -> int:
    """0 for reads, 1 for writes, 2 for everything that moves or destroys data or privilege."""
    if action in READ_ACTIONS:
        return 0
    if action in WRITE_ACTIONS:
        return 1
    return 2


def _opt(v: Any) -> float:
    return np.nan if v is None else float(v)


def event_row(ev: AccessEvent) -> dict[str, Any]:
    """One event as a flat row of the columnar form used by both paths."""
    return {
        "event_id": ev.event_id, "user": ev.user.id, "session": ev.session_id, "device": ev.device.id,
        "country": ev.network.country, "kind": ev.resource.kind.value, "sensitivity": ev.resource.sensitivity.value,
        "resource": ev.resource.id, "ts": ev.ts, "mfa": ev.auth.mfa_method.value,
        "minutes_since_mfa": float(ev.auth.minutes_since_mfa), "failed_attempts_1h": float(ev.auth.failed_attempts_1h),
        "privileged": float(ev.user.privileged), "device_managed": float(ev.device.managed),
        "device_compliant": float(ev.device.compliant), "edr_running": float(ev.device.edr_running),
        "disk_encrypted": _opt(ev.device.disk_encrypted), "os_patch_age_days": _opt(ev.device.os_patch_age_days),
        "requests_per_min": float(ev.activity.requests_per_min), "bytes_out": float(ev.activity.bytes_out),
        "distinct_resources_1h": float(ev.activity.distinct_resources_1h), "action": ev.activity.action,
        "lat": _opt(ev.network.lat), "lon": _opt(ev.network.lon), "asn": int(ev.network.asn),
        "is_vpn": _opt(ev.network.is_vpn), "is_tor": _opt(ev.network.is_tor), "is_hosting": _opt(ev.network.is_hosting),
    }


def events_to_frame(events: Iterable[AccessEvent]) -> pd.DataFrame:
    """Validated events to the columnar form (kept in the given order)."""
    return pd.DataFrame([event_row(e) for e in events])


def _col(frame: Any, name: str) -> np.ndarray:
    return np.asarray(frame[name], dtype=np.float64)


def raw_columns(frame: Any) -> dict[str, np.ndarray]:
    """The raw signal columns, as float64 arrays (NaN = missing).

    Args:
        frame: a DataFrame, or a mapping of column name to a sequence (one row in the online path).
    """
    ts = _col(frame, "ts")
    if "mfa" in frame:
        mfa = np.fromiter((MFA_STRENGTH[m] for m in frame["mfa"]), np.float64, len(ts))
    else:
        mfa = _col(frame, "mfa_strength")
    if "action_level" in frame:
        act = _col(frame, "action_level")
    else:
        act = np.fromiter((action_level(a) for a in frame["action"]), np.float64, len(ts))
    raw = {c: _col(frame, c) for c in (
        "minutes_since_mfa", "failed_attempts_1h", "privileged", "device_managed", "device_compliant",
        "edr_running", "disk_encrypted", "os_patch_age_days", "requests_per_min", "bytes_out",
        "distinct_resources_1h", "lat", "lon", "is_vpn", "is_tor", "is_hosting")}
    raw["ts"] = ts
    raw["hour"] = np.floor(ts / 3600.0) % 24
    raw["mfa_strength"] = mfa
    raw["action_level"] = act
    raw["asn"] = _col(frame, "asn")
    raw["posture"] = raw["device_managed"] + raw["device_compliant"] + raw["edr_running"]
    return raw


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def compute_features(raw: dict[str, np.ndarray], hist: dict[str, np.ndarray]) -> np.ndarray:
    """The one implementation of every feature, shared by both paths.

    Args:
        raw: raw signal columns (see :func:`raw_columns`).
        hist: history columns: ``n_prior``, ``prev_lat``, ``prev_lon``, ``prev_ts``,
            ``device_seen``, ``country_seen``, ``asn_seen``, ``kind_seen``,
            ``hour_window``, ``rate_log_sum``, ``bytes_log_sum``,
            ``sess_max_posture`` (NaN at a session's first event), ``sess_first_asn``.

    Returns:
        ``(n, len(FEATURE_NAMES))`` float64, columns in catalog order.
    """
    n_prior = hist["n_prior"]
    has_base = n_prior >= MIN_BASELINE_EVENTS
    safe_n = np.maximum(n_prior, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        rate_ratio = np.where(has_base, np.exp(np.log1p(raw["requests_per_min"]) - hist["rate_log_sum"] / safe_n), np.nan)
        bytes_ratio = np.where(has_base, np.exp(np.log1p(raw["bytes_out"]) - hist["bytes_log_sum"] / safe_n), np.nan)
        unusual_hour = np.where(has_base, 1.0 - hist["hour_window"] / safe_n, np.nan)
        dist = haversine_km(hist["prev_lat"], hist["prev_lon"], raw["lat"], raw["lon"])
        hours = np.maximum((raw["ts"] - hist["prev_ts"]) / 3600.0, MIN_TRAVEL_HOURS)
        velocity = np.where(dist >= LOCATION_NOISE_KM, dist / hours, 0.0)
        velocity = np.where(np.isnan(dist), np.nan, velocity)
        posture_drop = np.where(np.isnan(hist["sess_max_posture"]), 0.0,
                                np.maximum(hist["sess_max_posture"] - raw["posture"], 0.0))
    cols = {
        "mfa_strength": raw["mfa_strength"],
        "minutes_since_mfa": raw["minutes_since_mfa"],
        "failed_attempts_1h": raw["failed_attempts_1h"],
        "privileged": raw["privileged"],
        "device_managed": raw["device_managed"],
        "device_compliant": raw["device_compliant"],
        "edr_running": raw["edr_running"],
        "disk_encrypted": raw["disk_encrypted"],
        "os_patch_age_days": raw["os_patch_age_days"],
        "new_device": 1.0 - hist["device_seen"],
        "posture_drop_in_session": posture_drop,
        "requests_per_min": raw["requests_per_min"],
        "rate_vs_baseline": rate_ratio,
        "bytes_out_mb": raw["bytes_out"] / 1e6,
        "bytes_vs_baseline": bytes_ratio,
        "distinct_resources_1h": raw["distinct_resources_1h"],
        "unusual_hour": unusual_hour,
        "action_level": raw["action_level"],
        "new_resource_kind": 1.0 - hist["kind_seen"],
        "geo_velocity_kmh": velocity,
        "new_country": 1.0 - hist["country_seen"],
        "new_asn": 1.0 - hist["asn_seen"],
        "asn_changed_in_session": np.where(np.isnan(hist["sess_first_asn"]), 0.0,
                                           (raw["asn"] != hist["sess_first_asn"]).astype(np.float64)),
        "is_vpn": raw["is_vpn"],
        "is_tor": raw["is_tor"],
        "is_hosting": raw["is_hosting"],
    }
    return np.column_stack([np.asarray(cols[name], dtype=np.float64) for name in FEATURE_NAMES])


# ----------------------------------------------------------------------------- online path


@dataclass
class UserProfile:
    """What glassgate remembers about a user: the baseline every event is judged against."""

    user_id: str
    n: int = 0
    last_lat: float = float("nan")
    last_lon: float = float("nan")
    last_loc_ts: float = float("nan")
    # value -> the session in which it was first seen ("new" holds for that whole session)
    devices: dict[str, str] = field(default_factory=dict)
    countries: dict[str, str] = field(default_factory=dict)
    asns: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    rate_log_sum: float = 0.0
    bytes_log_sum: float = 0.0

    def to_json(self) -> dict[str, Any]:
        nan = np.isnan(self.last_loc_ts)
        return {
            "n": self.n, "last_lat": None if nan else self.last_lat, "last_lon": None if nan else self.last_lon,
            "last_loc_ts": None if nan else self.last_loc_ts, "devices": dict(sorted(self.devices.items())),
            "countries": dict(sorted(self.countries.items())), "asns": dict(sorted(self.asns.items())),
            "kinds": dict(sorted(self.kinds.items())),
            "hours": list(self.hours), "rate_log_sum": self.rate_log_sum, "bytes_log_sum": self.bytes_log_sum,
        }

    @classmethod
    def from_json(cls, user_id: str, d: dict[str, Any]) -> UserProfile:
        f = lambda v: float("nan") if v is None else float(v)  # noqa: E731
        return cls(user_id=user_id, n=d["n"], last_lat=f(d["last_lat"]), last_lon=f(d["last_lon"]),
                   last_loc_ts=f(d["last_loc_ts"]), devices=dict(d["devices"]), countries=dict(d["countries"]),
                   asns=dict(d["asns"]), kinds=dict(d["kinds"]), hours=list(d["hours"]),
                   rate_log_sum=float(d["rate_log_sum"]), bytes_log_sum=float(d["bytes_log_sum"]))


@dataclass
class SessionState:
    """Within-session memory: posture at its best so far, and the network it started on."""

    session_id: str
    user_id: str
    n: int = 0
    max_posture: float = float("nan")
    first_asn: float = float("nan")
    # where the user was last seen before this session began: travel is judged into the session
    prev_lat: float = float("nan")
    prev_lon: float = float("nan")
    prev_ts: float = float("nan")

    _FLOATS = ("max_posture", "first_asn", "prev_lat", "prev_lon", "prev_ts")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        for k in self._FLOATS:
            v = getattr(self, k)
            out[k] = None if np.isnan(v) else v
        return out

    @classmethod
    def from_json(cls, session_id: str, user_id: str, d: dict[str, Any]) -> SessionState:
        s = cls(session_id=session_id, user_id=user_id, n=d["n"])
        for k in cls._FLOATS:
            setattr(s, k, float("nan") if d.get(k) is None else float(d[k]))
        return s


def _history_row(p: UserProfile, s: SessionState, row: dict[str, Any], hour: int) -> dict[str, np.ndarray]:
    h = p.hours
    window = h[(hour - 1) % 24] + h[hour] + h[(hour + 1) % 24]
    one = lambda v: np.array([v], dtype=np.float64)  # noqa: E731
    sid = s.session_id
    if s.n == 0:
        prev = (p.last_lat, p.last_lon, p.last_loc_ts)
    else:
        prev = (s.prev_lat, s.prev_lon, s.prev_ts)

    def seen(d: dict[str, str], key: str) -> bool:
        return key in d and d[key] != sid

    return {
        "n_prior": one(p.n), "prev_lat": one(prev[0]), "prev_lon": one(prev[1]), "prev_ts": one(prev[2]),
        "device_seen": one(seen(p.devices, row["device"])), "country_seen": one(seen(p.countries, row["country"])),
        "asn_seen": one(seen(p.asns, str(int(row["asn"])))), "kind_seen": one(seen(p.kinds, row["kind"])),
        "hour_window": one(window), "rate_log_sum": one(p.rate_log_sum), "bytes_log_sum": one(p.bytes_log_sum),
        "sess_max_posture": one(s.max_posture), "sess_first_asn": one(s.first_asn),
    }


def _update(p: UserProfile, s: SessionState, keys: dict[str, Any], raw: dict[str, np.ndarray], i: int) -> None:
    if s.n == 0:
        s.prev_lat, s.prev_lon, s.prev_ts = p.last_lat, p.last_lon, p.last_loc_ts
    p.n += 1
    lat = float(raw["lat"][i])
    if not np.isnan(lat):
        p.last_lat, p.last_lon, p.last_loc_ts = lat, float(raw["lon"][i]), float(raw["ts"][i])
    sid = s.session_id
    p.devices.setdefault(keys["device"], sid)
    p.countries.setdefault(keys["country"], sid)
    p.asns.setdefault(str(int(keys["asn"])), sid)
    p.kinds.setdefault(keys["kind"], sid)
    p.hours[int(raw["hour"][i])] += 1
    p.rate_log_sum = p.rate_log_sum + float(np.log1p(raw["requests_per_min"][i : i + 1])[0])
    p.bytes_log_sum = p.bytes_log_sum + float(np.log1p(raw["bytes_out"][i : i + 1])[0])
    posture = float(raw["posture"][i])
    s.max_posture = posture if np.isnan(s.max_posture) else max(s.max_posture, posture)
    if s.n == 0:
        s.first_asn = float(keys["asn"])
    s.n += 1


def featurize_online(row: dict[str, Any], profile: UserProfile, session: SessionState) -> np.ndarray:
    """Feature vector for one event against the stored profile, then fold the event in.

    Mutates ``profile`` and ``session``; the caller persists them in the same
    transaction as the decision.
    """
    raw = raw_columns({k: [v] for k, v in row.items()})
    hist = _history_row(profile, session, row, int(raw["hour"][0]))
    x = compute_features(raw, hist)[0]
    _update(profile, session, row, raw, 0)
    return x


def warm_profiles(frame: pd.DataFrame) -> tuple[dict[str, UserProfile], dict[str, SessionState]]:
    """Fold a time-ordered history into profiles with the online update (no scoring)."""
    raw = raw_columns(frame)
    profiles: dict[str, UserProfile] = {}
    sessions: dict[str, SessionState] = {}
    cols = {k: frame[k].to_numpy() for k in ("user", "session", "device", "country", "kind", "asn")}
    for i in range(len(frame)):
        u, sid = cols["user"][i], cols["session"][i]
        p = profiles.get(u) or profiles.setdefault(u, UserProfile(u))
        s = sessions.get(sid) or sessions.setdefault(sid, SessionState(sid, u))
        keys = {"device": cols["device"][i], "country": cols["country"][i], "kind": cols["kind"][i], "asn": cols["asn"][i]}
        _update(p, s, keys, raw, i)
    return profiles, sessions


# ----------------------------------------------------------------------------- batch path


def _group_bounds(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by group code: the start index of each row's group, and group slices."""
    change = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [len(codes)]))
    row_start = np.repeat(starts, ends - starts)
    return row_start, np.column_stack([starts, ends])


def _exclusive_seq_sum(values: np.ndarray, slices: np.ndarray) -> np.ndarray:
    """Per group, the sequential float sum of the values before each row (matches the online fold)."""
    out = np.empty_like(values)
    for a, b in slices:
        acc = np.add.accumulate(np.concatenate(([0.0], values[a : b - 1]))) if b > a else values[a:a]
        out[a:b] = acc
    return out


def batch_features(frame: pd.DataFrame) -> np.ndarray:
    """Feature vectors for a whole time-ordered history, vectorised.

    Row ``i`` of the result is what the online path would produce for row ``i``
    after processing rows ``0..i-1`` from empty profiles.
    """
    n = len(frame)
    raw_all = raw_columns(frame)
    user_codes = pd.factorize(frame["user"])[0]
    order = np.lexsort((np.arange(n), user_codes))  # by user, keeping the given order inside
    raw = {k: v[order] for k, v in raw_all.items()}
    users = user_codes[order]
    row_start, slices = _group_bounds(users)
    idx = np.arange(n)
    hist: dict[str, np.ndarray] = {"n_prior": (idx - row_start).astype(np.float64)}

    sess = pd.factorize(frame["session"].to_numpy()[order])[0]

    # Last located event of the same user before the row's session began.
    located = ~np.isnan(raw["lat"])
    loc_idx = np.where(located, idx, -1)
    last_loc = np.maximum.accumulate(loc_idx)  # last located row at or before i (global)
    prev = np.concatenate(([-1], last_loc[:-1]))
    prev = np.where(prev >= row_start, prev, -1)
    sess_first_row = pd.Series(idx).groupby(sess).transform("min").to_numpy()
    prev = prev[sess_first_row]
    ok = prev >= 0
    for name, col in (("prev_lat", "lat"), ("prev_lon", "lon"), ("prev_ts", "ts")):
        hist[name] = np.where(ok, raw[col][np.maximum(prev, 0)], np.nan)

    # Seen before: first seen (for this user) in an earlier session than the row's own.
    sess_s = pd.Series(sess)
    seen_cols: tuple[tuple[str, str | None], ...] = (
        ("device_seen", "device"), ("country_seen", "country"), ("kind_seen", "kind"), ("asn_seen", None))
    for seen_name, key_col in seen_cols:
        keys = raw["asn"].astype(np.int64) if key_col is None else frame[key_col].to_numpy()[order]
        pair = pd.factorize(pd.MultiIndex.from_arrays([users, keys]))[0]
        first_sess = sess_s.groupby(pair).transform("first").to_numpy()
        hist[seen_name] = (first_sess != sess).astype(np.float64)

    # Hour-of-day histogram of prior events, window of +-1 hour.
    hour = raw["hour"].astype(np.int64)
    onehot = np.zeros((n, 24), dtype=np.int32)
    onehot[idx, hour] = 1
    cs = np.cumsum(onehot, axis=0, dtype=np.int64) - onehot
    prior = cs - cs[row_start]
    hist["hour_window"] = (prior[idx, (hour - 1) % 24] + prior[idx, hour] + prior[idx, (hour + 1) % 24]).astype(np.float64)
    del onehot, cs, prior

    hist["rate_log_sum"] = _exclusive_seq_sum(np.log1p(raw["requests_per_min"]), slices)
    hist["bytes_log_sum"] = _exclusive_seq_sum(np.log1p(raw["bytes_out"]), slices)

    # Session state, in the same per-user order (a session belongs to one user).
    s_order = np.lexsort((idx, sess))
    s_codes = sess[s_order]
    s_start, _ = _group_bounds(s_codes)
    posture = raw["posture"][s_order]
    cummax = pd.Series(posture).groupby(s_codes).cummax().to_numpy()
    prev_max = np.concatenate(([np.nan], cummax[:-1]))
    first = s_start == idx
    s_max = np.where(first, np.nan, prev_max)
    s_first_asn = np.where(first, np.nan, raw["asn"][s_order][s_start])
    inv = np.empty(n, dtype=np.int64)
    inv[s_order] = idx
    hist["sess_max_posture"] = s_max[inv]
    hist["sess_first_asn"] = s_first_asn[inv]

    x_sorted = compute_features(raw, hist)
    out = np.empty_like(x_sorted)
    out[order] = x_sorted
    return out


def feature_dict(x: Sequence[float]) -> dict[str, float]:
    return {name: float(v) for name, v in zip(FEATURE_NAMES, x, strict=True)}
