"""Scenario cases with a known cause: the spec and edge cases in ``evals/datasets/``, the eval world, sampling.

World cases are sampled deterministically (seeded) from the later days of a generated world: labelled
attacks carry their cause family (``risk.synth.ATTACKS``), benign look-alikes carry none. Edge cases are
hand-written in ``edge_cases.yaml``; their events are built here from ordinary events of the same world.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from risk.catalog import Family
from risk.synth import ATTACKS, BENIGN_UNUSUAL, World, generate_world, row_to_event, world_start_for

DATASETS = Path(__file__).parent / "datasets"
SPEC_PATH = DATASETS / "scenarios.yaml"
EDGE_PATH = DATASETS / "edge_cases.yaml"


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the bad fields."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldSpec(_Strict):
    users: int = Field(ge=20, le=5000)
    days: int = Field(ge=8, le=90)
    test_days: int = Field(ge=1)
    attack_rate: float = Field(gt=0, lt=0.5)
    now: AwareDatetime
    max_iter: int = Field(ge=10, le=1000)


class CaseSpec(_Strict):
    attack_share: float = Field(gt=0, le=1)
    one_per_session: bool = True


class StabilitySpec(_Strict):
    cases: int = Field(ge=0)


class FidelitySpec(_Strict):
    max_k: int = Field(ge=1, le=26)
    random_draws: int = Field(ge=1)


class EvalSpec(_Strict):
    world: WorldSpec
    cases: CaseSpec
    stability: StabilitySpec
    fidelity: FidelitySpec


class Tune(_Strict):
    field: str
    feature: str
    values: list[float] = Field(min_length=1)
    below: Literal["step_up", "deny"]


class NewUser(_Strict):
    id: str
    warmup: int = Field(ge=0, le=4)


class Expect(_Strict):
    outcome: Literal["allow", "step_up", "deny"] | None = None
    rule: str | None = None
    exception: bool | None = None
    note_prefix: str | None = None


class EdgeCase(_Strict):
    id: str
    type: str
    description: str
    set: dict[str, Any] = Field(default_factory=dict)
    resource: dict[str, str] | None = None
    tune: Tune | None = None
    new_user: NewUser | None = None
    control: dict[str, dict[str, Any]] | None = None
    causes: list[Family]
    expect: Expect = Field(default_factory=Expect)


class Case(BaseModel):
    """One evaluated decision and what is known about it."""

    case_id: str
    group: Literal["attack", "benign_unusual", "edge"]
    scenario: str
    causes: list[str]
    event_id: str
    user: str
    expect: Expect = Field(default_factory=Expect)
    description: str = ""


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML: {exc}") from None


def _bad(path: Path, exc: ValidationError) -> DatasetError:
    fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return DatasetError(f"{path}: {fields}")


def load_spec(path: Path = SPEC_PATH) -> EvalSpec:
    try:
        spec = EvalSpec.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise _bad(path, exc) from None
    if spec.world.test_days >= spec.world.days - 3:
        raise DatasetError(f"{path}: world.test_days must leave at least 4 earlier days (got {spec.world.test_days} "
                           f"of {spec.world.days})")
    return spec


def load_edge_cases(path: Path = EDGE_PATH) -> list[EdgeCase]:
    raw = _load_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), list):
        raise DatasetError(f"{path}: expected a mapping with a `cases` list")
    out = []
    for i, item in enumerate(raw["cases"]):
        try:
            out.append(EdgeCase.model_validate(item))
        except ValidationError as exc:
            raise DatasetError(f"{path}: cases[{i}]: {_bad(path, exc).args[0].split(': ', 1)[1]}") from None
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: duplicate case ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


def build_world(spec: EvalSpec, *, seed: int) -> World:
    w = spec.world
    return generate_world(users=w.users, days=w.days, seed=seed, attack_rate=w.attack_rate,
                          start=world_start_for(w.now, w.days), until=w.now)


def sample_cases(later: pd.DataFrame, *, n_cases: int, spec: EvalSpec, seed: int) -> tuple[list[Case], dict[str, int]]:
    """Sample ``n_cases`` world cases from the later days: attacks evenly per type, then look-alikes.

    Returns the cases and, per scenario type, how many fewer than its quota the world had (only types short)."""
    if n_cases < 1:
        raise DatasetError(f"--cases must be at least 1 (got {n_cases})")
    rng = np.random.default_rng(seed + 101)
    n_attack = max(1, round(n_cases * spec.cases.attack_share))
    quotas = _spread(n_attack, list(ATTACKS)) | _spread(n_cases - n_attack, list(BENIGN_UNUSUAL))
    out: list[Case] = []
    short: dict[str, int] = {}
    for scenario, k in quotas.items():
        rows = later[(later["scenario"] == scenario) & (later["label"] == int(scenario in ATTACKS))]
        if spec.cases.one_per_session:  # a random event of each session, then a random choice of sessions
            rows = rows.groupby("session", sort=True).sample(n=1, random_state=int(rng.integers(2**31)))
        if len(rows) < k:
            short[scenario] = k - len(rows)
        if not k or not len(rows):
            continue
        pick = rows.iloc[np.sort(rng.choice(len(rows), size=min(k, len(rows)), replace=False))]
        group: Literal["attack", "benign_unusual"] = "attack" if scenario in ATTACKS else "benign_unusual"
        causes = [ATTACKS[scenario].value] if scenario in ATTACKS else []
        out += [Case(case_id=f"{scenario}-{r.event_id}", group=group, scenario=scenario, causes=causes,
                     event_id=r.event_id, user=r.user) for r in pick.itertuples(index=False)]
    return out, short


def _spread(n: int, names: list[str]) -> dict[str, int]:
    base, extra = divmod(max(n, 0), len(names))
    return {name: base + (i < extra) for i, name in enumerate(names)}


def write_cases(cases: list[Case], path: Path) -> None:
    path.write_text("".join(json.dumps(c.model_dump(mode="json")) + "\n" for c in cases))


# ----------------------------------------------------------------------------- edge-case events


def set_path(event: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b`` in a native event; an unknown top-level part is a dataset error, not a new field."""
    head, _, leaf = dotted.partition(".")
    if head not in event or not isinstance(event[head], dict) or not leaf:
        raise DatasetError(f"{EDGE_PATH}: {dotted!r} is not a field of the native event")
    event[head][leaf] = value


def edge_event(base_row: dict[str, Any], case: EdgeCase, *, at: datetime, suffix: str,
               user_id: str | None = None) -> dict[str, Any]:
    """The edge case's native event from an ordinary world row."""
    ev = copy.deepcopy(row_to_event(base_row))
    ev["event_id"] = f"evt-{case.id}-{suffix}"
    ev["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if user_id is not None:
        ev["user"]["id"] = user_id
        ev["session_id"] = f"s-{case.id}"
    if case.resource is not None:
        ev["resource"] = dict(case.resource)
    for k, v in case.set.items():
        set_path(ev, k, v)
    return ev


def later_minute(now: datetime, minutes: float) -> datetime:
    return now + timedelta(minutes=minutes)
