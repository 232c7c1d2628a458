"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from integrations.api.deps import RuntimeDep
from integrations.api.errors import ProblemError, problem_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=problem_responses(503))
def readyz(rt: RuntimeDep) -> dict[str, Any]:
    """Ready to decide: the database answers, the model is loaded and the policy is loaded."""
    checks: dict[str, str] = {}
    try:
        with rt.sessions() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named in the answer
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        checks["model"] = f"ok ({rt.model.version})"
    except Exception as exc:  # noqa: BLE001
        checks["model"] = f"not loaded: {exc}"
    try:
        checks["policy"] = f"ok ({len(rt.policy.docs)} documents)"
    except Exception as exc:  # noqa: BLE001
        checks["policy"] = f"not loaded: {exc}"
    bad = [k for k, v in checks.items() if not v.startswith("ok")]
    if bad:
        raise ProblemError(503, "not ready: " + "; ".join(f"{k} {checks[k]}" for k in bad),
                           extra={"checks": checks, "not_ready": bad})
    return {"status": "ready", "checks": checks}
