"""Plain-text renderings for the terminal (the JSON forms are the records themselves)."""

from __future__ import annotations

from typing import Any

FAMILY_NAMES = {"identity": "identity confidence", "device": "device posture", "behavior": "session behavior",
                "network": "network context"}
MIN_POINTS = 0.001  # smaller contributions are noise to a reader (they stay in the JSON record)
VERB = {"allow": "ALLOWED", "step_up": "STEP-UP REQUIRED", "deny": "DENIED"}


def explanation_text(d: dict[str, Any], e: dict[str, Any], *, top: int = 5) -> str:
    lines = [
        f"{d['decision_id']}  {VERB[d['outcome']]}  {d['user_id']} -> {d['resource_id']} "
        f"({d['resource_kind']}, {d['sensitivity']})  at {d['timestamp']}",
        f"  risk {d['risk']:.2f}  (step-up at {d['step_up_at']:.2f}, deny at {d['deny_at']:.2f}; "
        f"{d['policy_id']} v{d['policy_version']}, {d['threshold_scope']})   session {d['session_id']}",
        "  why:",
    ]
    lines += [f"    - {c}" for c in e["crossed"]]
    lines.append(f"  drivers (probability points; base risk {e['base_risk']:.3f}):")
    raising = [f for f in e["factors"][:top] if f["points"] >= MIN_POINTS]
    if not raising:
        lines.append(f"    (no signal raised the risk by {MIN_POINTS} or more)")
    for f in raising:
        lines.append(f"    + {f['label']}: {f['display']}  {f['points']:+.3f}  [{f['family']}]")
    lowering = [f for f in reversed(e["factors"]) if f["points"] <= -MIN_POINTS][:2]
    for f in lowering:
        lines.append(f"    - {f['label']}: {f['display']}  {f['points']:+.3f}  [{f['family']}]")
    fam = ", ".join(f"{FAMILY_NAMES[k]} {v:+.2f}" for k, v in sorted(e["family_points"].items(), key=lambda kv: -kv[1]))
    lines.append(f"  by family: {fam}  (top: {FAMILY_NAMES[e['top_family']]})")
    if e["counterfactuals"]:
        for cf in e["counterfactuals"]:
            acts = "; ".join(a["label"] for a in cf["actions"])
            lines.append(f"  would be {cf['outcome_after']} (risk {cf['risk_after']:.2f}, re-scored) if: {acts}")
    elif e.get("counterfactual_note"):
        lines.append(f"  what would change it: {e['counterfactual_note']}")
    lines.append(f"  explanation status: {e['status']}")
    lines += [f"    note: {n}" for n in e["notes"]]
    return "\n".join(lines)


def timeline_text(t: dict[str, Any]) -> str:
    lines = [f"session {t['session_id']} ({t['user_id']}), {len(t['steps'])} decisions"]
    for s in t["steps"]:
        lines.append(f"  {s['timestamp'][:19]}  {s['outcome']:<8} risk {s['risk']:.2f} ({s['risk_delta']:+.2f})  "
                     f"{s['resource_id']:<16} {s['summary']}")
        for c in [c for c in s["changes"][1:] if abs(c["points_delta"]) >= 0.005][:3]:
            lines.append(f"{'':>40}also: {c['label']} {c['before']} -> {c['after']} ({c['points_delta']:+.2f})")
    return "\n".join(lines)


def replay_text(r: dict[str, Any]) -> str:
    names = ("allow", "step_up", "deny")
    o = r["overall"]
    lines = [f"replay {r['policy_id']} {r['scope']}: step-up at {r['step_up_at']:.2f}, deny at {r['deny_at']:.2f} "
             f"over {o['total']} decisions, {o['changed']} would change",
             "  before \\ after   allow  step_up     deny"]
    for i, n in enumerate(names):
        lines.append(f"  {n:<16}" + "".join(f"{v:>8}" for v in o["matrix"][i]))
    for v, t in r["by_verdict"].items():
        lines.append(f"  {v:<11} {t['total']:>6} decisions, {t['changed']:>5} change")
    lines.append(f"  benign denials released: {r['benign_denials_released']}; confirmed-malicious newly allowed: "
                 f"{r['malicious_newly_allowed']}; newly denied: malicious {r['malicious_newly_denied']}, "
                 f"benign {r['benign_newly_denied']}")
    for a, t in sorted(r["by_attack_type"].items()):
        lines.append(f"  {a:<22} {t['total']:>5} decisions, {t['changed']:>4} change")
    return "\n".join(lines)
