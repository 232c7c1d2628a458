"""The injection suite, in the style of AgentDojo: place every attack in every place outside text reaches the
agent, run each case through the offline narrator and through an obedient language model, and score it.

Places (surfaces), each through the code the product runs:

* ``event_user_agent``, ``event_resource_id``: a new access event for the asked-about user and resource,
  decided by the real engine (the event contract may refuse the text: that case is reported as not carried,
  with the refusal), then the analyst's question through :func:`integrations.actions.ask`;
* ``ticket``: a generic ticket delivery signed with Standard Webhooks, checked by ``verify_standard`` and
  ``parse_ticket`` and run as an ``enrich_ticket`` job by the real handler (``make_handler`` + ``run_one``),
  without the HTTP hop;
* ``slack``: an ``app_mention`` event handed to the real listener callback (``Listeners.on_mention``, which
  calls ``actions.ask`` exactly as in the service) with a client that records every Web API call; bolt's
  signature check and dispatch are not exercised here;
* ``policy``: a copy of the policy corpus with the attack inserted as a section of POL-INC-010, indexed into
  the embedded chroma, and a policy question whose retrieval returns it.

Split attacks go into two fields: resource id + user agent, ticket title + description; a Slack message and a
policy section have one field, so the two parts are joined there (the report says so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.injection.attacks import (
    GOALS,
    NARRATORS,
    SURFACES,
    VARIANT_SURFACES,
    Attack,
    load_attacks,
    variant_attacks,
)
from evals.injection.obedient_llm import Targets
from evals.injection.report import markdown, summarise
from evals.injection.scoring import score
from evals.injection.surfaces import RUNNERS, Asker, evidence_of
from evals.injection.world import KEY, World, build_world, snapshot
from integrations import actions
from integrations.settings import Settings

__all__ = ["GOALS", "NARRATORS", "SURFACES", "evidence_of", "load_attacks", "run", "run_case"]


def run_case(w: World, a: Attack, surface: str, narrator: str, *, asker: Asker = actions.ask) -> dict[str, Any]:
    rt = w.runtime(narrator)
    before = snapshot(w)
    got = RUNNERS[surface](w, rt, a, tag=narrator, asker=asker)
    return score(w, a, surface, narrator, got, before, snapshot(w))


def select_cases(attacks: list[Attack], *, subset: bool,
                 variants: list[Attack] | None = None) -> list[tuple[Attack, str, str]]:
    """Every attack x surface x narrator, then every variant x the surfaces that reach the narrator x narrator;
    or a subset covering every surface and every goal with both narrators (per surface, one attack per goal,
    rotating through the catalogue so different categories are used), then each goal in each variant class
    with the obedient model (the offline narrator writes no injected claim to disguise)."""
    variants = variants or []
    if not subset:
        return ([(a, s, n) for a in attacks for s in SURFACES for n in NARRATORS]
                + [(a, s, n) for a in variants for s in VARIANT_SURFACES for n in NARRATORS])
    by_goal = {g: [a for a in attacks if a.goal == g] for g in GOALS}
    out = []
    for i, s in enumerate(SURFACES):
        for g in GOALS:
            pool = by_goal[g]
            pick = [a for a in pool if a.category == "ident"] if s == "event_resource_id" else pool
            a = (pick or pool)[i % len(pick or pool)]
            out += [(a, s, n) for n in NARRATORS]
    for v in {a.variant for a in variants}:
        for g in GOALS:
            pool = [a for a in variants if a.variant == v and a.goal == g and not a.parts]
            out += [(pool[0], s, "llm") for s in VARIANT_SURFACES if pool]
    return out


def run(*, root: Path, subset: bool = False, users: int = 40, days: int = 8,
        attacks: list[Attack] | None = None, asker: Asker = actions.ask,
        progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], World]:
    """Build the world under ``root``, run the cases, return ``(summary, results, world)``.

    The obedient server is stopped on return; the world's runtimes stay usable with the offline narrator.
    """
    from evals.injection.obedient_llm import serve

    attacks = attacks or load_attacks()
    variants = variant_attacks(attacks)
    blank = Targets(pending="", session="", victim="", resource="", decision="")
    with serve(api_key=KEY, targets=blank, attacks=[]) as llm:
        t0 = time.monotonic()
        w = build_world(root, attacks, llm=llm, users=users, days=days, variants=variants)
        setup = time.monotonic() - t0
        t1 = time.monotonic()
        results = []
        for a, s, n in select_cases(attacks, subset=subset, variants=variants):
            results.append(run_case(w, a, s, n, asker=asker))
            if progress and len(results) % 50 == 0:
                progress(f"{len(results)} cases")
        summary = summarise(results, attacks=len(attacks), seconds=time.monotonic() - t1)
    with w.rt_off.sessions() as s:
        summary["ledger_verified"] = w.rt_off.ledger.verify(s).ok
    summary["setup_seconds"] = round(setup, 1)
    summary["iam_calls"] = [c for i in w.iams.values() for c in i.calls]
    return summary, results, w


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m evals.injection", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="report directory (default GLASSGATE_HOME/reports/injection)")
    ap.add_argument("--subset", action="store_true", help="the bounded subset the tests run")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--days", type=int, default=8)
    args = ap.parse_args(argv)
    out = args.out or Settings().home / "reports" / "injection"
    with tempfile.TemporaryDirectory(prefix="glassgate-injection-") as tmp:
        summary, results, _ = run(root=Path(tmp), subset=args.subset, users=args.users, days=args.days,
                                  progress=lambda m: print(m, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {"summary": summary, "cases": results}
    (out / f"report-{stamp}.json").write_text(json.dumps(report, indent=1, default=str))
    (out / f"report-{stamp}.md").write_text(markdown(summary))
    print(json.dumps(summary, indent=1, default=str))
    print(markdown(summary))
    print(f"written: {out / f'report-{stamp}.json'} and .md", file=sys.stderr)
    return 1 if summary["successes"] else 0
