"""A seeded synthetic organisation and weeks of its access traffic.

Benign work follows each user's role, home city, working hours and devices;
labelled attacks and benign-but-unusual activity are injected with their cause
family. Everything is vectorised with numpy: a million events take seconds.
It is the demo's data and the training set, never a stand-in for real traffic
in a decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from risk.catalog import Family

Progress = Callable[[str, float], None]

# name, country, lat, lon, utc offset (h), consumer ISP ASNs
CITIES = [
    ("Berlin", "DE", 52.52, 13.40, 1, (3320, 6805)),
    ("Munich", "DE", 48.14, 11.58, 1, (3320, 8881)),
    ("London", "GB", 51.51, -0.13, 0, (2856, 5089)),
    ("Paris", "FR", 48.86, 2.35, 1, (3215, 12322)),
    ("Madrid", "ES", 40.42, -3.70, 1, (3352, 12479)),
    ("Warsaw", "PL", 52.23, 21.01, 1, (5617, 12741)),
    ("Stockholm", "SE", 59.33, 18.07, 1, (3301, 1257)),
    ("New York", "US", 40.71, -74.01, -5, (7922, 701)),
    ("Chicago", "US", 41.88, -87.63, -6, (7922, 7018)),
    ("Austin", "US", 30.27, -97.74, -6, (7018, 11427)),
    ("Toronto", "CA", 43.65, -79.38, -5, (812, 577)),
    ("Bangalore", "IN", 12.97, 77.59, 5, (24560, 9829)),
]
HOME_CITIES = list(range(len(CITIES)))
# Far-away places used by attackers and travellers.
FAR_CITIES = [
    ("Lagos", "NG", 6.52, 3.38, 1, (29465, 37148)),
    ("Sao Paulo", "BR", -23.55, -46.63, -3, (28573, 18881)),
    ("Singapore", "SG", 1.35, 103.82, 8, (9506, 4773)),
    ("Moscow", "RU", 55.76, 37.62, 3, (8359, 12389)),
    ("Jakarta", "ID", -6.21, 106.85, 7, (7713, 17974)),
    ("Sydney", "AU", -33.87, 151.21, 10, (1221, 4804)),
    ("Tokyo", "JP", 35.68, 139.69, 9, (2516, 4713)),
]
CORP_ASN = 64600  # Northwind's office egress and corporate VPN
HOSTING_ASNS = (16509, 14061, 24940, 63949)
TOR_ASNS = (60729, 53667, 208294)

ROLES: dict[str, tuple[bool, tuple[str, ...]]] = {
    "finance-analyst": (False, ("mail", "wiki", "crm", "analytics-db", "billing-api")),
    "finance-admin": (True, ("mail", "wiki", "analytics-db", "billing-api", "payroll-db")),
    "hr": (False, ("mail", "wiki", "hr-portal", "hr-db")),
    "engineer": (False, ("mail", "wiki", "ci-api", "analytics-db", "aws-prod-api")),
    "sre": (True, ("mail", "wiki", "ci-api", "aws-prod-api", "aws-console")),
    "it-admin": (True, ("mail", "wiki", "okta-admin", "jira-admin", "aws-console")),
    "sales": (False, ("mail", "wiki", "crm", "customer-db", "public-site-cms")),
    "ot-operator": (False, ("mail", "hmi-line2", "historian-ot", "scada-plant1")),
    "ot-engineer": (True, ("mail", "wiki", "scada-plant1", "hmi-line2", "historian-ot")),
    "executive": (False, ("mail", "wiki", "crm", "analytics-db")),
}
ROLE_WEIGHTS = np.array([10, 4, 6, 22, 7, 5, 14, 8, 5, 4], dtype=float)

RESOURCES: dict[str, tuple[str, str]] = {
    "mail": ("saas", "internal"), "wiki": ("saas", "internal"), "crm": ("saas", "confidential"),
    "public-site-cms": ("saas", "public"), "hr-portal": ("saas", "confidential"),
    "payroll-db": ("database", "restricted"), "customer-db": ("database", "confidential"),
    "hr-db": ("database", "restricted"), "analytics-db": ("database", "internal"),
    "aws-prod-api": ("cloud_api", "restricted"), "billing-api": ("cloud_api", "confidential"),
    "ci-api": ("cloud_api", "internal"), "scada-plant1": ("ot", "restricted"),
    "hmi-line2": ("ot", "confidential"), "historian-ot": ("ot", "internal"),
    "okta-admin": ("admin_console", "restricted"), "aws-console": ("admin_console", "restricted"),
    "jira-admin": ("admin_console", "confidential"),
}

FIRST_NAMES = ("alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert "
               "sybil trent victor walter xena yusuf zara").split()

ATTACKS: dict[str, Family] = {
    "impossible_travel": Family.NETWORK,
    "token_replay": Family.NETWORK,
    "mfa_fatigue": Family.IDENTITY,
    "credential_stuffing": Family.IDENTITY,
    "unmanaged_device": Family.DEVICE,
    "posture_degraded": Family.DEVICE,
    "bulk_export": Family.BEHAVIOR,
    "ot_privilege_misuse": Family.BEHAVIOR,
}
# Benign but unusual: the look-alikes that keep a risk model honest (labelled benign).
BENIGN_UNUSUAL = ("travel_vpn", "new_laptop", "oncall_night", "personal_travel", "forgot_password",
                  "quarter_end_export", "cloud_workstation", "project_review")
# Attack types that also occur as ONE signal alone (variant 1 or 2 of a session; 0 is the combined form), so
# that a model learns each signal's own effect instead of the conjunctions (see the model card).
SOLO: dict[str, tuple[str, str]] = {
    "credential_stuffing": ("failed attempts only", "password only, no MFA"),
    "token_replay": ("the session continues from another continent", "the session continues through Tor"),
    "bulk_export": ("an insider who only exports", "a lateral sweep across many resources"),
}
SOLO_SHARE = 2 / 3  # of each SOLO type's sessions
# Forgotten passwords: failed attempts before the strong factor, geometric with this parameter, capped (a
# decaying tail to the cap, not a hard edge where a tree would draw a cliff).
FORGOT_P = 0.2
FORGOT_CAP = 40
RAMP_SLOPE = 3.0  # of the log-logistic share of solo sessions that are attacks, against log magnitude
TRAVEL = ("travel_vpn", "personal_travel")
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)",
      "Mozilla/5.0 (X11; Linux x86_64)")
MFA_CODES = np.array(["none", "sms", "push", "totp", "webauthn"], dtype=object)


@dataclass(frozen=True)
class Org:
    """What makes one organisation unlike another: its name prefix, role mix and home cities.

    Attributes:
        prefix: prepended to user names ("" for the primary organisation).
        role_weights: relative weight of each role of :data:`ROLES` (None: the default mix).
        cities: indices into :data:`CITIES` users live in (None: all of them).
    """

    prefix: str = ""
    role_weights: tuple[float, ...] | None = None
    cities: tuple[int, ...] | None = None


@dataclass(frozen=True)
class World:
    """The generated organisation and its traffic (``events`` is time-ordered)."""

    users: pd.DataFrame
    events: pd.DataFrame
    seed: int
    start: datetime
    days: int

    @property
    def attack_types(self) -> list[str]:
        return list(ATTACKS)


def _users(rng: np.random.Generator, n: int, org: Org) -> pd.DataFrame:
    roles = list(ROLES)
    w = np.array(org.role_weights, dtype=float) if org.role_weights else ROLE_WEIGHTS
    role_idx = rng.choice(len(roles), size=n, p=w / w.sum())
    cities = list(org.cities) if org.cities else HOME_CITIES
    city = rng.choice(cities, size=n, p=None)
    if not org.prefix:
        role_idx[0] = roles.index("finance-admin")  # alice, the finance admin of the design card
        city[0] = 0
    names = [org.prefix + (FIRST_NAMES[i] if i < len(FIRST_NAMES)
                           else f"{FIRST_NAMES[i % len(FIRST_NAMES)]}{i // len(FIRST_NAMES)}") for i in range(n)]
    start_hour = rng.uniform(7.0, 10.0, n)
    mfa_pref = rng.choice([4, 2, 3, 1], size=n, p=[0.55, 0.30, 0.12, 0.03])
    ot_role = np.isin(role_idx, [roles.index("ot-operator"), roles.index("ot-engineer")])
    mfa_pref = np.where(ot_role & (rng.random(n) < 0.92), 4, mfa_pref)  # OT policy requires WebAuthn
    return pd.DataFrame({
        "user": names, "role": [roles[i] for i in role_idx], "role_idx": role_idx,
        "privileged": [ROLES[roles[i]][0] for i in role_idx], "city": city, "start_hour": start_hour,
        "mfa_pref": mfa_pref, "device": [f"lt-{1000 + i * 7 % 9000:04d}" for i in range(n)],
        "isp_asn": [CITIES[c][5][rng.integers(2)] for c in city],
        "rate_base": rng.lognormal(2.2, 0.35, n), "bytes_base": rng.lognormal(10.5, 0.7, n),
        "oncall": rng.random(n) < 0.15,
    })


def _benign_sessions(rng: np.random.Generator, users: pd.DataFrame, days: int, start: datetime) -> pd.DataFrame:
    n_users = len(users)
    day = np.repeat(np.arange(days), n_users)
    uid = np.tile(np.arange(n_users), days)
    weekday = (start.weekday() + day) % 7
    lam = np.where(weekday < 5, 1.7, 0.1)
    count = rng.poisson(lam)
    day, uid = np.repeat(day, count), np.repeat(uid, count)
    m = len(day)
    offset = np.array([CITIES[c][4] for c in users["city"]], dtype=float)[uid]
    local = users["start_hour"].to_numpy()[uid] + rng.uniform(0, 8.5, m)
    t0 = start.timestamp() + day * 86400.0 + (local - offset) * 3600.0
    return pd.DataFrame({"uid": uid, "t0": t0, "n": rng.poisson(5.0, m) + 1, "scenario": "benign"})


def _expand(rng: np.random.Generator, sess: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session rows to event rows: (session index, position in session, timestamp)."""
    n = sess["n"].to_numpy()
    sid = np.repeat(np.arange(len(sess)), n)
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    pos = np.arange(n.sum()) - np.repeat(starts, n)
    gaps = np.where(pos == 0, 0.0, rng.exponential(360.0, n.sum()) + 20.0)
    cum = np.cumsum(gaps)
    ts = sess["t0"].to_numpy()[sid] + cum - np.repeat(cum[starts], n)
    return sid, pos, ts


def _pick(rng: np.random.Generator, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    out = frame.iloc[rng.choice(len(frame), size=min(k, len(frame)), replace=False)]
    return out.assign(anchor=out.index.to_numpy()).reset_index(drop=True)


def generate_world(*, users: int = 300, days: int = 28, seed: int = 7, start: datetime | None = None,
                   attack_rate: float = 0.03, until: datetime | None = None,
                   progress: Progress | None = None, org: Org | None = None) -> World:
    """Generate the organisation and its traffic.

    Args:
        users: number of people.
        days: length of the history.
        seed: everything is a function of it.
        start: first day, midnight UTC (default: 2026-11-01).
        attack_rate: share of sessions that are attacks (spread over all attack types).
        until: drop events after this instant (a demo world ends "now", not later today).
        progress: called with (stage, fraction done).
        org: the organisation's prefix, role mix and cities (default: Northwind, the demo's).

    Returns:
        The world, events sorted by time with event and session ids assigned.
    """
    rng = np.random.default_rng(seed)
    start = (start or datetime(2026, 11, 1, tzinfo=UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    say = progress or (lambda *_: None)
    say("users", 0.0)
    org = org or Org()
    u = _users(rng, users, org)
    sess = _benign_sessions(rng, u, days, start)
    burn_in = start.timestamp() + 3 * 86400
    eligible = sess[sess["t0"] > burn_in]
    n_attack = max(len(ATTACKS), int(len(sess) * attack_rate))
    per_type = max(1, n_attack // len(ATTACKS))
    # Travellers: two and a half days abroad (on the corporate VPN, or not), with a night without
    # sessions on each side; nothing else is scheduled for them around the trip.
    uid_all, t_all = sess["uid"].to_numpy(), sess["t0"].to_numpy()
    drop = np.zeros(len(sess), dtype=bool)
    busy = np.zeros(len(sess), dtype=bool)
    trip = 2.5 * 86400
    for scenario in TRAVEL:
        travel = _pick(rng, eligible[~busy[eligible.index]], per_type // 2)
        for tu, tt in zip(travel["uid"].to_numpy(), travel["t0"].to_numpy(), strict=True):
            mine = uid_all == tu
            drop |= mine & (((t_all >= tt - 16 * 3600) & (t_all < tt)) | ((t_all >= tt + trip) & (t_all < tt + trip + 16 * 3600)))
            busy |= mine & (t_all >= tt - 86400) & (t_all < tt + trip + 86400)
            sess.loc[mine & (t_all >= tt) & (t_all < tt + trip), "scenario"] = scenario
    sess.loc[drop, "n"] = 0  # kept as empty rows so that anchors stay valid
    eligible = eligible[~busy[eligible.index]]
    extra: list[pd.DataFrame] = []
    sess_day = np.floor((sess["t0"].to_numpy() - start.timestamp()) / 86400.0)
    last_of_day = sess.assign(day=sess_day).groupby(["uid", "day"])["t0"].idxmax().to_numpy()
    for scenario in ATTACKS:
        pool = eligible
        if scenario == "impossible_travel":  # at night, after the user's last session of the day
            pool = eligible[eligible.index.isin(last_of_day)]
        if scenario == "ot_privilege_misuse":
            pool = eligible[u["role"].to_numpy()[eligible["uid"]] != "ot-engineer"]
            pool = pool[u["privileged"].to_numpy()[pool["uid"]]]
        a = _pick(rng, pool, per_type).copy()
        a["anchor_end"] = a["t0"] + a["n"] * 380.0
        a["scenario"] = scenario
        a["t0"] = {
            "impossible_travel": a["anchor_end"] + rng.uniform(1200, 5400, len(a)),
            "token_replay": a["anchor_end"] + rng.uniform(60, 900, len(a)),
            "posture_degraded": a["t0"],
        }.get(scenario, a["t0"] + rng.uniform(-4, 4, len(a)) * 3600)
        if scenario in ("bulk_export", "ot_privilege_misuse"):
            lo, hi = (1.0, 4.0) if scenario == "bulk_export" else (19.0, 23.5)
            off = np.array([CITIES[c][4] for c in u["city"].to_numpy()[a["uid"]]], dtype=float)
            day0 = np.floor(a["t0"] / 86400.0) * 86400.0
            a["t0"] = day0 + (rng.uniform(lo, hi, len(a)) - off) * 3600.0
        a["n"] = rng.integers(2, 7, len(a))
        a["solo"] = np.where(rng.random(len(a)) < SOLO_SHARE, rng.integers(1, 3, len(a)), 0) if scenario in SOLO else 0
        if scenario == "bulk_export":  # the solo forms happen in working hours
            off = np.array([CITIES[c][4] for c in u["city"].to_numpy()[a["uid"]]], dtype=float)
            day0 = np.floor((a["t0"] + off * 3600.0) / 86400.0) * 86400.0
            a["t0"] = np.where(a["solo"] > 0, np.maximum(day0 + (rng.uniform(10.0, 16.5, len(a)) - off) * 3600.0,
                                                         a["anchor_end"] + 1800.0), a["t0"])
        extra.append(a)
    unusual = []
    role_of = u["role"].to_numpy()[eligible["uid"]]
    pools = {"oncall_night": eligible[u["oncall"].to_numpy()[eligible["uid"]]],
             "quarter_end_export": eligible[np.isin(role_of, ["finance-analyst", "finance-admin", "sales"])],
             "cloud_workstation": eligible[np.isin(role_of, ["engineer", "sre"])],
             "project_review": eligible[np.isin(role_of, ["engineer", "sre", "finance-analyst", "it-admin"])]}
    for scenario in BENIGN_UNUSUAL:
        if scenario in TRAVEL:
            continue  # travel relocates existing sessions, below
        # forgotten passwords are common, and their tail is what keeps the failed-attempts ramp smooth
        b = _pick(rng, pools.get(scenario, eligible), per_type * (4 if scenario == "forgot_password" else 2)).copy()
        b["scenario"] = scenario
        b["anchor_end"] = np.nan
        if scenario == "oncall_night":
            off = np.array([CITIES[c][4] for c in u["city"].to_numpy()[b["uid"]]], dtype=float)
            b["t0"] = np.floor(b["t0"] / 86400.0) * 86400.0 + (rng.uniform(0.0, 5.0, len(b)) - off) * 3600.0
        unusual.append(b)
    # Posture degradation happens inside an existing benign session: mark that session itself.
    posture = extra.pop(list(ATTACKS).index("posture_degraded"))
    sess["anchor"] = np.arange(len(sess))
    sess.loc[posture["anchor"], "scenario"] = "posture_degraded"
    sess.loc[posture["anchor"], "n"] = np.maximum(sess.loc[posture["anchor"], "n"], 4)
    all_sess = pd.concat([sess] + extra + unusual, ignore_index=True)
    all_sess["solo"] = all_sess["solo"].fillna(0).astype(np.int64) if "solo" in all_sess else 0
    say("sessions", 0.3)
    sid, pos, ts = _expand(rng, all_sess)
    ev = _fill_events(rng, u, all_sess, sid, pos, ts)
    say("events", 0.8)
    ev = ev.sort_values("ts", kind="stable")
    if until is not None:
        ev = ev[ev["ts"] <= until.timestamp()]
    ev = ev.reset_index(drop=True)
    ev.insert(0, "event_id", [f"evt-{org.prefix}{seed:x}-{i:07d}" for i in range(len(ev))])
    say("done", 1.0)
    return World(users=u, events=ev, seed=seed, start=start, days=days)


def _fill_events(rng: np.random.Generator, u: pd.DataFrame, s: pd.DataFrame, sid: np.ndarray, pos: np.ndarray,
                 ts: np.ndarray) -> pd.DataFrame:
    n = len(sid)
    scen = s["scenario"].to_numpy()[sid]
    uid = s["uid"].to_numpy()[sid]
    is_ = {name: scen == name for name in list(ATTACKS) + list(BENIGN_UNUSUAL) + ["benign"]}
    city = u["city"].to_numpy()[uid]
    role_idx = u["role_idx"].to_numpy()[uid]
    solo = s["solo"].to_numpy()[sid] if "solo" in s else np.zeros(n, dtype=np.int64)
    one = {(name, k): is_[name] & (solo == k) for name in SOLO for k in (1, 2)}
    combined = {name: is_[name] & (solo == 0) for name in SOLO}
    roles = list(ROLES)

    # Session ids: token replay continues the anchor's session id; everything else its own.
    session_key = np.array([f"s-{k:06x}" for k in range(len(s))], dtype=object)
    # (the Tor form of the solo replay signs in anew: a stolen refresh token starts its own session)
    continues = (s["scenario"].to_numpy() == "token_replay") & (s["solo"].to_numpy() != 2)
    own = np.where(continues, s["anchor"].to_numpy(), np.arange(len(s)))
    sess_id = session_key[own.astype(np.int64)][sid]
    device = u["device"].to_numpy()[uid].astype(object)
    device = np.where(is_["new_laptop"], np.char.add("lt-n", (uid * 13 % 9000).astype(str)).astype(object), device)
    device = np.where(is_["unmanaged_device"], np.char.add("pc-", (uid * 31 % 9000).astype(str)).astype(object), device)

    # Network: home ISP, office, or corporate VPN; attackers and travellers elsewhere.
    where = rng.choice(3, size=len(s), p=[0.62, 0.30, 0.08])[sid]  # one place per session
    lat = np.array([c[2] for c in CITIES])[city] + rng.normal(0, 0.05, n)
    lon = np.array([c[3] for c in CITIES])[city] + rng.normal(0, 0.05, n)
    country = np.array([c[1] for c in CITIES], dtype=object)[city]
    asn = np.where(where == 0, u["isp_asn"].to_numpy()[uid], CORP_ASN)
    is_vpn = (where == 2).astype(float)
    is_tor = np.zeros(n)
    # Attackers appear anywhere; a traveller stays in one place for the whole trip.
    far = np.where(is_["impossible_travel"], rng.integers(len(FAR_CITIES), size=len(s))[sid],
                   rng.integers(len(FAR_CITIES), size=len(u))[uid])
    far_lat, far_lon = np.array([c[2] for c in FAR_CITIES])[far], np.array([c[3] for c in FAR_CITIES])[far]
    far_cc = np.array([c[1] for c in FAR_CITIES], dtype=object)[far]
    far_asn = np.array([c[5][0] for c in FAR_CITIES])[far]
    away = is_["impossible_travel"] | is_["travel_vpn"] | is_["personal_travel"]
    lat, lon = np.where(away, far_lat, lat), np.where(away, far_lon, lon)
    country = np.where(away, far_cc, country)
    asn = np.where(is_["impossible_travel"] | is_["personal_travel"], far_asn, asn)
    asn = np.where(is_["travel_vpn"], CORP_ASN, asn)
    is_vpn = np.where(is_["travel_vpn"], 1.0, np.where(is_["impossible_travel"] | is_["personal_travel"], 0.0, is_vpn))
    cloud = is_["cloud_workstation"]  # engineers working from a cloud dev box
    asn = np.where(cloud, HOSTING_ASNS[0], asn)
    is_hosting = np.where(cloud, 1.0, 0.0)
    replay_tor = (rng.random(len(s))[sid] < 0.4) | one["token_replay", 2]
    replay_rows = combined["token_replay"] | one["token_replay", 2]
    asn = np.where(replay_rows, np.where(replay_tor, rng.choice(TOR_ASNS, n), rng.choice(HOSTING_ASNS, n)), asn)
    is_tor = np.where(replay_rows & replay_tor, 1.0, is_tor)
    is_hosting = np.where(replay_rows & ~replay_tor, 1.0, is_hosting)
    is_vpn = np.where(replay_rows, 0.0, is_vpn)
    lat = np.where(replay_rows, np.nan, lat)  # anonymising networks geolocate poorly
    lon = np.where(replay_rows, np.nan, lon)
    # A replayed token from another continent: a consumer ISP there, geolocated, nothing anonymising.
    jump = one["token_replay", 1]
    far_any = rng.integers(len(FAR_CITIES), size=len(s))[sid]
    lat = np.where(jump, np.array([c[2] for c in FAR_CITIES])[far_any] + rng.normal(0, 0.05, n), lat)
    lon = np.where(jump, np.array([c[3] for c in FAR_CITIES])[far_any] + rng.normal(0, 0.05, n), lon)
    country = np.where(jump, np.array([c[1] for c in FAR_CITIES], dtype=object)[far_any], country)
    asn = np.where(jump, np.array([c[5][1] for c in FAR_CITIES])[far_any], asn)
    is_vpn = np.where(jump, 0.0, is_vpn)
    stuffing = combined["credential_stuffing"]
    asn = np.where(stuffing, 200000 + rng.integers(0, 50, n), asn)  # residential proxies in the same country

    # Identity.
    mfa = u["mfa_pref"].to_numpy()[uid].astype(float)
    mfa = np.where(is_["mfa_fatigue"], 2.0, mfa)
    mfa = np.where(stuffing, 0.0, mfa)
    mfa = np.where(is_["oncall_night"], 4.0, mfa)
    minutes = (ts - s["t0"].to_numpy()[sid]) / 60.0 + rng.uniform(0, 4, n)
    minutes = np.where(combined["token_replay"], minutes + rng.uniform(90, 600, n), minutes)
    minutes = np.where(stuffing, 0.0, minutes)
    failed = np.where(rng.random(n) < 0.04, rng.integers(1, 3, n), 0).astype(float)
    failed = np.where(is_["mfa_fatigue"], rng.integers(8, 26, n), failed)
    failed = np.where(stuffing, rng.integers(6, 40, n), failed)
    # Failed attempts alone, at every magnitude from "a few too many" to a spray (log-uniform 4..60).
    m_fail = np.floor(np.exp(rng.uniform(np.log(3), np.log(81), len(s))))
    failed = np.where(one["credential_stuffing", 1], m_fail[sid], failed)
    no_mfa = one["credential_stuffing", 2]  # the password worked and nothing else was asked
    mfa = np.where(no_mfa, 0.0, mfa)
    minutes = np.where(no_mfa, np.floor(rng.uniform(0, 3, n)), minutes)
    forgot = is_["forgot_password"]  # a few wrong passwords, then a strong factor
    # (a decaying tail, not a hard edge: a range's edge is where a tree model draws a cliff)
    failed = np.where(forgot, np.minimum(rng.geometric(FORGOT_P, len(s)), FORGOT_CAP)[sid], failed)
    mfa = np.where(forgot & (mfa < 3), 3.0, mfa)
    privileged = u["privileged"].to_numpy()[uid].astype(float)

    # Device posture.
    managed = np.ones(n)
    compliant = (rng.random(len(s)) > 0.03)[sid].astype(float)
    edr = (rng.random(len(s)) > 0.01)[sid].astype(float)
    encrypted = np.where(rng.random(n) < 0.05, np.nan, (rng.random(len(s)) > 0.01)[sid].astype(float))
    patch = np.where(rng.random(n) < 0.05, np.nan, np.floor(rng.gamma(2.0, 7.0, len(s))[sid]))
    um = is_["unmanaged_device"]
    managed, compliant, edr = np.where(um, 0.0, managed), np.where(um, 0.0, compliant), np.where(um, 0.0, edr)
    encrypted = np.where(um, np.where(rng.random(n) < 0.5, np.nan, 0.0), encrypted)
    patch = np.where(um, rng.integers(90, 400, n).astype(float), patch)
    nl = is_["new_laptop"]
    compliant, edr, encrypted = np.where(nl, 1.0, compliant), np.where(nl, 1.0, edr), np.where(nl, 1.0, encrypted)
    patch = np.where(nl, rng.integers(0, 4, n).astype(float), patch)
    pd_rows = is_["posture_degraded"]
    n_per = np.bincount(sid)[sid]
    degraded = pd_rows & (pos >= np.maximum(1, n_per // 3))
    lost = rng.random(len(s))[sid]
    edr = np.where(degraded, 0.0, np.where(pd_rows, 1.0, edr))
    compliant = np.where(degraded & (lost < 0.6), 0.0, np.where(pd_rows, 1.0, compliant))

    # Resources and activity.
    role_res = [ROLES[r][1] for r in roles]
    pick = rng.random(n)
    res_idx = np.floor(pick * np.array([len(x) for x in role_res])[role_idx]).astype(int)
    all_res = list(RESOURCES)
    role_res_ids = np.full((len(roles), 5), -1)
    for i, rr in enumerate(role_res):
        role_res_ids[i, : len(rr)] = [all_res.index(r) for r in rr]
    res = role_res_ids[role_idx, res_idx]
    ot_target = np.array([all_res.index("scada-plant1"), all_res.index("hmi-line2")])[rng.integers(2, size=len(s))][sid]
    res = np.where(is_["ot_privilege_misuse"], ot_target, res)
    res = np.where(is_["bulk_export"], np.array([all_res.index(r) for r in ("customer-db", "payroll-db", "crm", "hr-db")])[
        rng.integers(4, size=len(s))][sid], res)
    resource = np.array(all_res, dtype=object)[res]
    kind = np.array([RESOURCES[r][0] for r in all_res], dtype=object)[res]
    sens = np.array([RESOURCES[r][1] for r in all_res], dtype=object)[res]
    act = np.where(rng.random(n) < 0.8, 0, np.where(rng.random(n) < 0.9, 1, 2))
    act = np.where(combined["bulk_export"] | one["bulk_export", 1] | is_["ot_privilege_misuse"], 2, act)
    rate = u["rate_base"].to_numpy()[uid] * rng.lognormal(0, 0.35, n)
    volume = u["bytes_base"].to_numpy()[uid] * rng.lognormal(0, 0.8, n)
    distinct = rng.integers(1, 6, n).astype(float)
    be = combined["bulk_export"]
    rate = np.where(be, rate * rng.uniform(15, 80, n), rate)
    volume = np.where(be, volume * rng.uniform(200, 3000, n), volume)
    distinct = np.where(be, rng.integers(15, 60, n), distinct)
    # An insider who only exports: the volume alone, log-uniform 30x..20,000x their usual.
    exp_only = one["bulk_export", 1]
    m_vol = np.exp(rng.uniform(np.log(30), np.log(20000), len(s)))
    volume = np.where(exp_only, volume * m_vol[sid], volume)
    # A lateral sweep: many distinct resources within the hour at a brisk rate, ordinary volumes.
    sweep = one["bulk_export", 2]
    m_spread = np.floor(np.exp(rng.uniform(np.log(10), np.log(150), len(s))))
    distinct = np.where(sweep, m_spread[sid], distinct)
    brisk = rng.random(len(s))[sid] < 0.5  # half the sweeps are scripted (brisk), half by hand
    rate = np.where(sweep & brisk, rate * rng.uniform(2, 12, n), rate)
    pr = is_["project_review"]  # a review or migration that touches many systems, in working hours
    distinct = np.where(pr, np.floor(6 * np.exp(rng.exponential(0.55, len(s))))[sid], distinct)
    rate = np.where(pr, rate * rng.uniform(1, 2.5, n), rate)
    qe = is_["quarter_end_export"]  # month-end reporting: big but in working hours, on the usual systems
    act = np.where(qe & (rng.random(n) < 0.6), 2, act)
    rate = np.where(qe, rate * rng.uniform(2, 8, n), rate)
    volume = np.where(qe, volume * rng.uniform(10, 150, n), volume)
    action = np.array(["read", "write", "export"], dtype=object)[act]
    action = np.where(is_["ot_privilege_misuse"], "configure", action)

    # Optional signals go missing now and then: missing is reported, never assumed benign.
    miss_loc = rng.random(n) < 0.03
    lat, lon = np.where(miss_loc, np.nan, lat), np.where(miss_loc, np.nan, lon)
    miss_net = rng.random(n) < 0.03
    is_vpn = np.where(miss_net, np.nan, is_vpn)
    is_tor = np.where(miss_net & ~replay_rows, np.nan, is_tor)
    is_hosting = np.where(miss_net & ~replay_rows, np.nan, is_hosting)

    label = np.isin(scen, list(ATTACKS))
    label = np.where(is_["posture_degraded"], degraded, label)
    # A single signal at a modest magnitude is ambiguous in the world itself: the share of such sessions that
    # are attacks rises smoothly with the magnitude (log-logistic), the rest are the signal's benign look-alike.
    # The model then learns a ramp, not a step at the edge of a generated range.
    ramp = rng.random(len(s))
    benign_solo = np.zeros(n, dtype=bool)
    for (name, k), m, m50, look in ((("credential_stuffing", 1), m_fail, 8.0, "forgot_password"),
                                    (("bulk_export", 2), m_spread, 20.0, "project_review"),
                                    (("bulk_export", 1), m_vol, 100.0, "quarter_end_export")):
        p_attack = 1.0 / (1.0 + (m50 / np.maximum(m, 1e-9)) ** RAMP_SLOPE)
        rows = one[name, k] & (ramp >= p_attack)[sid]
        benign_solo |= rows
        scen = np.where(rows, look, scen)
    label = label & ~benign_solo
    cause = np.array([ATTACKS.get(x, "") for x in scen], dtype=object)
    cause = np.where(label, cause, "")
    scen_out = np.where(is_["posture_degraded"] & ~degraded, "benign", scen)
    return pd.DataFrame({
        "user": u["user"].to_numpy()[uid], "session": sess_id, "device": device, "country": country,
        "kind": kind, "sensitivity": sens, "resource": resource, "ts": np.round(ts, 3),
        "mfa": MFA_CODES[mfa.astype(int)], "minutes_since_mfa": np.floor(np.maximum(minutes, 0)),
        "failed_attempts_1h": failed.astype(float), "privileged": privileged,
        "device_managed": managed, "device_compliant": compliant, "edr_running": edr,
        "disk_encrypted": encrypted, "os_patch_age_days": patch, "requests_per_min": np.floor(rate) + 1,
        "bytes_out": np.floor(volume), "distinct_resources_1h": distinct, "action": action,
        "lat": np.round(lat, 4), "lon": np.round(lon, 4), "asn": asn.astype(np.int64), "is_vpn": is_vpn,
        "is_tor": is_tor, "is_hosting": is_hosting, "role": np.array(roles, dtype=object)[role_idx],
        "user_agent": np.array(UA, dtype=object)[uid % len(UA)],
        "label": label.astype(np.int8), "scenario": scen_out, "cause_family": cause,
    })


def row_to_event(row: dict[str, Any]) -> dict[str, Any]:
    """One generated row as a native event (DESIGN.md), ready for the online path."""
    def opt_bool(v: float) -> bool | None:
        return None if v != v else bool(v)  # noqa: PLR0124 - NaN check

    ts = datetime.fromtimestamp(float(row["ts"]), UTC)
    asn = int(row["asn"])
    net: dict[str, Any] = {"ip": f"198.51.{asn % 250}.{(asn // 250) % 250 + 1}", "country": row["country"], "asn": asn}
    if row["lat"] == row["lat"]:
        net["lat"], net["lon"] = float(row["lat"]), float(row["lon"])
    for k in ("is_vpn", "is_tor", "is_hosting"):
        if (b := opt_bool(row[k])) is not None:
            net[k] = b
    dev: dict[str, Any] = {"id": row["device"], "managed": bool(row["device_managed"]),
                           "compliant": bool(row["device_compliant"]), "edr_running": bool(row["edr_running"]),
                           "user_agent": row["user_agent"]}
    if (b := opt_bool(row["disk_encrypted"])) is not None:
        dev["disk_encrypted"] = b
    if row["os_patch_age_days"] == row["os_patch_age_days"]:
        dev["os_patch_age_days"] = int(row["os_patch_age_days"])
    return {
        "event_id": row["event_id"], "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "session_id": row["session"],
        "user": {"id": row["user"], "roles": [row["role"]], "privileged": bool(row["privileged"])},
        "device": dev, "network": net,
        "auth": {"mfa_method": row["mfa"], "minutes_since_mfa": int(row["minutes_since_mfa"]),
                 "failed_attempts_1h": int(row["failed_attempts_1h"])},
        "resource": {"id": row["resource"], "kind": row["kind"], "sensitivity": row["sensitivity"]},
        "activity": {"action": row["action"], "requests_per_min": int(row["requests_per_min"]),
                     "bytes_out": int(row["bytes_out"]), "distinct_resources_1h": int(row["distinct_resources_1h"])},
    }


def world_start_for(now: datetime, days: int) -> datetime:
    """A start date such that the world's last day is ``now``'s day."""
    return (now.astimezone(UTC) - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
