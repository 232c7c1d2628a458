"""The decision page (waterfall, rules and their passages, counterfactual, narrative tabs, verdicts) and
the session page (risk over the session's steps and what changed at each)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from agent.narrative import Audience
from integrations.services import dashboard, dashboard_actions
from integrations.ui.auth import User, check_csrf
from integrations.ui.views import deps, render
from risk.store.queries import NotFound
from tools.registry import ToolNotFound

router = APIRouter(prefix="/ui", include_in_schema=False)


def _not_found(request: Request, user: User, what: str) -> Response:
    return render(request, "missing.html", status=404, user=user, what=what)


@router.get("/decisions/{decision_id}")
def decision_page(decision_id: str, request: Request, user: User, audience: Audience = Audience.ANALYST,
                  saved: int | None = None) -> Response:
    try:
        view = dashboard.decision(deps=deps(request), decision_id=decision_id)
    except ToolNotFound:
        return _not_found(request, user, f"decision {decision_id}")
    return render(request, "decision.html", user=user, view=view, d=view.full.decision, e=view.full.explanation,
                  audience=audience.value, audiences=[a.value for a in Audience], saved=saved)


@router.get("/decisions/{decision_id}/narrative")
async def narrative(decision_id: str, request: Request, user: User, audience: Audience = Audience.ANALYST) -> Response:
    """The verified narrative for one audience, as a fragment (the decision page loads it after itself:
    the first narrative of a process waits for the policy index)."""
    try:
        out = await run_in_threadpool(lambda: dashboard_actions.narrative(deps=deps(request), decision_id=decision_id,
                                                                          audience=audience))
    except ToolNotFound:
        return _not_found(request, user, f"decision {decision_id}")
    page = "_narrative.html" if request.headers.get("hx-request") else "narrative.html"
    return render(request, page, user=user, n=out, decision_id=decision_id, audience=audience.value,
                  audiences=[a.value for a in Audience])


@router.post("/decisions/{decision_id}/verdict")
def verdict(decision_id: str, request: Request, user: User,
            value: Annotated[Literal["malicious", "benign"], Form(alias="verdict")],
            csrf: Annotated[str, Form(max_length=128)] = "",
            attack_type: Annotated[str, Form(max_length=64)] = "",
            note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    check_csrf(user, csrf)
    try:
        out = dashboard_actions.record_verdict(deps=deps(request), decision_id=decision_id, principal=user.principal,
                                               verdict=value, attack_type=attack_type.strip() or None,
                                               note=note.strip() or None)
    except NotFound:
        return _not_found(request, user, f"decision {decision_id}")
    if out.outcome != "recorded":
        return render(request, "refused.html", status=403 if out.refusal == "not_entitled" else 422, user=user,
                      message=out.message or "the verdict was not recorded")
    return RedirectResponse(f"/ui/decisions/{decision_id}?saved={out.audit_seq}#verdicts", status_code=303)


@router.get("/sessions/{session_id}")
def session_page(session_id: str, request: Request, user: User) -> Response:
    try:
        tl = dashboard.session(deps=deps(request), session_id=session_id)
    except ToolNotFound:
        return _not_found(request, user, f"session {session_id}")
    return render(request, "session.html", user=user, tl=tl)
