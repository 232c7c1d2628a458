"""The suite's report: totals per goal, surface and variant class, and its markdown form."""

from __future__ import annotations

from typing import Any

from evals.injection.attacks import GOALS, NARRATORS, SURFACES, VARIANT_SURFACES
from evals.injection.variants import VARIANTS


def summarise(results: list[dict[str, Any]], *, attacks: int, seconds: float) -> dict[str, Any]:
    plain = [r for r in results if r["variant"] == "plain"]

    def table(key: str, values: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for v in values:
            out[v] = {}
            for n in NARRATORS:
                rs = [r for r in rows if r[key] == v and r["narrator"] == n]
                out[v][n] = {"cases": len(rs), "carried": sum(r["checks"]["carried"] for r in rs),
                             "reached": sum(r["checks"]["reached_agent"] for r in rs),
                             "obeyed_by_llm": sum(r["checks"]["llm_obeyed"] for r in rs),
                             # before verification: the model's draft carried the injected claim
                             "injected_drafts": sum(r["checks"]["llm_injected_draft"] for r in rs),
                             # after verification: what the attacker got (a claim returned, an action, a breach)
                             "success": sum(r["success"] for r in rs)}
        return out

    holes = [{k: r[k] for k in ("case", "goal", "breaches", "goal_achieved", "new_proposals", "answers")}
             for r in results if r["success"]]
    return {"attacks": attacks, "cases": len(results), "seconds": round(seconds, 1),
            "successes": sum(r["success"] for r in results),
            "by_narrator": {n: {"cases": sum(r["narrator"] == n for r in results),
                                "success": sum(r["success"] for r in results if r["narrator"] == n)} for n in NARRATORS},
            "by_goal": table("goal", GOALS, plain), "by_surface": table("surface", SURFACES, plain),
            # every variant class on the surfaces whose text reaches the narrator, the plain class included
            "by_variant": table("variant", VARIANTS, [r for r in results if r["surface"] in VARIANT_SURFACES]),
            "not_carried": sorted({(r["attack"], r["surface"], r["not_carried"]) for r in results if r["not_carried"]}),
            "fallbacks": sum(r["checks"]["fallback_recorded"] for r in results),
            "llm_injected_drafts": sum(r["checks"]["llm_injected_draft"] for r in results),
            "attack_quoted_in_answer": sorted({r["case"] for r in results if r["checks"]["attack_quoted_in_answer"]}),
            "holes": holes}


def markdown(summary: dict[str, Any]) -> str:
    lines = [f"Injection suite: {summary['attacks']} attacks, {summary['cases']} cases, {summary['successes']} attack "
             f"successes, {summary['seconds']} s", "",
             "| goal / surface | narrator | cases | carried | reached agent | obeyed by LLM | attack success |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for key in ("by_goal", "by_surface"):
        for v, per in summary[key].items():
            for n, c in per.items():
                lines.append(f"| {v} | {n} | {c['cases']} | {c['carried']} | {c['reached']} | {c['obeyed_by_llm']} | "
                             f"{c['success']} |")
    lines += ["", "By variant class (event user agent and Slack): the injected claim in the model's draft before "
              "verification, and attack successes after it.", "",
              "| variant | narrator | cases | reached agent | obeyed by LLM | injected claim in draft (before) | "
              "attack success (after) |", "|---|---|---:|---:|---:|---:|---:|"]
    for v, per in summary["by_variant"].items():
        for n, c in per.items():
            lines.append(f"| {v} | {n} | {c['cases']} | {c['reached']} | {c['obeyed_by_llm']} | {c['injected_drafts']} "
                         f"| {c['success']} |")
    lines += ["", f"LLM drafts carrying an injected claim: {summary['llm_injected_drafts']}; fallbacks recorded: "
              f"{summary['fallbacks']}; answers quoting attack text as data: {len(summary['attack_quoted_in_answer'])}"]
    if summary["not_carried"]:
        lines += ["", "Not carried (the field refused the text, or it never reached the agent):"]
        lines += [f"- {a} / {s}: {why}" for a, s, why in summary["not_carried"]]
    return "\n".join(lines) + "\n"
