"""The training world: the customer's organisation plus companion organisations, and label noise.

A model trained on one generated organisation learns that organisation's habits (its role mix, its time
zones, the users' hours) and the generator's conjunctions. Companion organisations, generated with other
seeds, sizes, role mixes and home cities, make every signal's effect show up in contexts the customer's
world lacks; label noise (attacks an analyst missed, benign events reported as attacks) keeps the model
from drawing cliffs at the exact edge of a generated range. The card's metrics are measured on the
customer's own later days only, with the true labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from risk.synth import ROLES, Org, World, generate_world

# role order of risk.synth.ROLES: finance-analyst, finance-admin, hr, engineer, sre, it-admin, sales,
# ot-operator, ot-engineer, executive
COMPANIONS: tuple[Org, ...] = (
    Org(prefix="acme.", role_weights=(4, 2, 3, 40, 14, 6, 10, 0.5, 0.5, 3), cities=(7, 8, 9, 10)),
    Org(prefix="kite.", role_weights=(18, 6, 8, 8, 3, 4, 30, 2, 1, 6), cities=(11, 2, 3, 4)),
    Org(prefix="mill.", role_weights=(4, 2, 3, 6, 3, 5, 4, 30, 14, 2), cities=(0, 1, 5, 6)),
)
assert all(o.role_weights is None or len(o.role_weights) == len(ROLES) for o in COMPANIONS)
COMPANION_ATTACK_RATE = 0.08
MISSED_ATTACK_RATE = 0.03  # attacks labelled benign in training
FALSE_REPORT_RATE = 0.001  # benign events labelled attacks in training


@dataclass(frozen=True)
class TrainingMix:
    """How the training world is built around the customer's world.

    Attributes:
        companions: how many companion organisations (0..3).
        scale: companion size relative to the customer's user count (at least 60 users each: the solo attacks need numbers).
        label_noise: apply :data:`MISSED_ATTACK_RATE` and :data:`FALSE_REPORT_RATE` to training labels.
    """

    companions: int = 3
    scale: float = 0.5
    label_noise: bool = True


def companion_worlds(world: World, mix: TrainingMix) -> list[World]:
    """The companion organisations, over the same days as ``world`` (seeds derived from its seed)."""
    users = max(60, int(len(world.users) * mix.scale))
    return [generate_world(users=users + 17 * k, days=world.days, seed=world.seed * 101 + k + 1, start=world.start,
                           attack_rate=COMPANION_ATTACK_RATE, org=org)
            for k, org in enumerate(COMPANIONS[: mix.companions])]


def noisy_labels(y: np.ndarray, *, seed: int) -> np.ndarray:
    """Training labels with seeded noise: some attacks missed, a few benign events reported."""
    rng = np.random.default_rng(seed)
    flip_down = (y == 1) & (rng.random(len(y)) < MISSED_ATTACK_RATE)
    flip_up = (y == 0) & (rng.random(len(y)) < FALSE_REPORT_RATE)
    return np.where(flip_down, 0, np.where(flip_up, 1, y)).astype(y.dtype)

