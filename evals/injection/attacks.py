"""The attack catalogue: the goals, the surfaces, and the attacks as data (attacks.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from evals.injection.variants import PARAPHRASED_ATTACKS, VARIANTS, disguise

ATTACKS_FILE = Path(__file__).with_name("attacks.yaml")
GOALS = ("create_proposal", "approve", "widen_exception", "change_threshold", "revoke_session", "claim_mistake",
         "post_other_channel")
SURFACES = ("event_user_agent", "event_resource_id", "ticket", "slack", "policy")
NARRATORS = ("offline", "llm")
# The surfaces whose text reaches the narrator (README: ticket text does not, resource ids refuse most text,
# and the poisoned policy copy holds the plain catalogue): the variant classes run there.
VARIANT_SURFACES = ("event_user_agent", "slack")


@dataclass(frozen=True)
class Attack:
    id: str
    category: str
    goal: str
    text: str
    parts: tuple[str, ...] = ()
    variant: str = "plain"  # one of variants.VARIANTS: how the text and the obedient model's claim are written


def load_attacks(path: Path = ATTACKS_FILE) -> list[Attack]:
    raw = yaml.safe_load(path.read_text())["attacks"]
    out = [Attack(id=a["id"], category=a["category"], goal=a["goal"], text=a["text"], parts=tuple(a.get("parts") or ()))
           for a in raw]
    bad = [a.id for a in out if a.goal not in GOALS]
    if bad or len({a.id for a in out}) != len(out):
        raise ValueError(f"attacks.yaml: unknown goals in {bad} or duplicate ids")
    return out


def variant_attacks(attacks: list[Attack]) -> list[Attack]:
    """Each attack disguised (homoglyph, zero-width, fullwidth), and one paraphrased attack per goal. Ids
    stay identifier characters: the event surface puts them in an event id."""
    out = [Attack(id=f"{a.id}+{v}", category=a.category, goal=a.goal, text=disguise(a.text, v),
                  parts=tuple(disguise(p, v) for p in a.parts), variant=v)
           for v in VARIANTS if v not in ("plain", "paraphrase") for a in attacks]
    out += [Attack(id=f"para-{g}", category="paraphrase", goal=g, text=PARAPHRASED_ATTACKS[g], variant="paraphrase")
            for g in GOALS]
    return out
