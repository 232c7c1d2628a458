"""Approvals (pending proposals with their evidence; approve or reject through the one approval path),
the what-if replay of a threshold with drafting a change from it, and the audit ledger's status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from agent.approval import Role
from integrations.api.routes.proposals import REFUSAL_STATUS
from integrations.services import dashboard_actions as actions
from integrations.ui.auth import User, check_csrf
from integrations.ui.views import deps, render
from tools.registry import ToolInputError

router = APIRouter(prefix="/ui", include_in_schema=False)

DRAFTERS = (Role.POLICY_OWNER, Role.ADMIN)  # who sees "draft a threshold change" (the rules decide approval)
EXPORT_PAGE = 1000


def _approvals(request: Request, user: User, outcome: actions.ApprovalOutcome | None = None) -> Response:
    items = actions.pending(deps=deps(request))
    status = 200 if outcome is None or outcome.ok else 422 if outcome.refusal is None \
        else REFUSAL_STATUS[outcome.refusal]  # the statuses the API answers the same refusal with
    return render(request, "approvals.html", status=status, user=user, items=items, outcome=outcome)


@router.get("/approvals")
def approvals(request: Request, user: User) -> Response:
    return _approvals(request, user)


@router.post("/approvals/{proposal_id}/{verb}")
def decide(proposal_id: str, verb: str, request: Request, user: User,
           csrf: Annotated[str, Form(max_length=128)] = "",
           reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    check_csrf(user, csrf)
    if verb not in ("approve", "reject"):
        return render(request, "missing.html", status=404, user=user, what=f"action {verb}")
    if verb == "reject" and not reason.strip():
        out = actions.ApprovalOutcome(proposal_id=proposal_id, approve=False, ok=False,
                                      message="a rejection needs a reason")
    else:
        out = actions.decide(deps=deps(request), proposal_id=proposal_id, principal=user.principal, approve=verb == "approve",
                             reason=reason.strip() or None)
    # the answer is the approvals page itself, with the outcome (or the refusal and its policy section) on top
    return _approvals(request, user, out)


def _scopes(request: Request) -> list[dict[str, object]]:
    d = deps(request)
    with d.sessions() as s:
        policy = d.tools.policy_in_force(s)
    return [{"policy_id": doc.id, "scope": t.scope, "step_up_at": t.step_up_at, "deny_at": t.deny_at,
             "section": t.section} for doc in policy.docs for t in doc.thresholds]


def _num(v: str | None) -> float | None:
    try:
        return None if v in (None, "") else float(v)  # type: ignore[arg-type]
    except ValueError:
        return None


@router.get("/whatif")
def whatif(request: Request, user: User) -> Response:
    """The page, or (for htmx) only the replay, for ``policy``/``scope`` and the slider's thresholds."""
    scopes = _scopes(request)
    q = request.query_params
    chosen = next((s for s in scopes if f"{s['policy_id']}|{s['scope']}" == q.get("target")), scopes[0] if scopes
                  else None)
    result, problems = None, []
    htmx = bool(request.headers.get("hx-request"))
    # a replay reads every decision of the scope: the full page answers first and the replay follows as a
    # fragment (htmx), unless the form was submitted without script (run=1)
    if chosen is not None and (htmx or q.get("run") == "1"):
        su, dn = _num(q.get("step_up_at")), _num(q.get("deny_at"))
        try:
            result = actions.whatif(deps=deps(request), policy_id=str(chosen["policy_id"]), scope=str(chosen["scope"]),
                                    step_up_at=su, deny_at=dn)
        except ToolInputError as exc:
            problems = [f"{p.field}: {p.message}" for p in exc.problems]
    page = "_whatif_result.html" if htmx else "whatif.html"
    return render(request, page, user=user, scopes=scopes, chosen=chosen, result=result, problems=problems,
                  can_draft=user.has(*DRAFTERS), drafted=q.get("drafted"))


@router.post("/whatif/draft")
def draft(request: Request, user: User, target: Annotated[str, Form(max_length=200)],
          step_up_at: Annotated[float, Form(ge=0, le=1)], deny_at: Annotated[float, Form(ge=0, le=1)],
          csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    check_csrf(user, csrf)
    if not user.has(*DRAFTERS):
        return render(request, "refused.html", status=403, user=user,
                      message="drafting a threshold change needs the policy_owner or admin role")
    policy_id, _, scope = target.partition("|")
    try:
        rec = actions.draft_threshold_change(deps=deps(request), principal=user.principal, policy_id=policy_id, scope=scope,
                                             step_up_at=step_up_at, deny_at=deny_at)
    except ToolInputError as exc:
        return render(request, "refused.html", status=422, user=user,
                      message="; ".join(f"{p.field}: {p.message}" for p in exc.problems))
    return RedirectResponse(f"/ui/approvals#p-{rec['proposal_id']}", status_code=303)


@router.get("/audit")
def audit(request: Request, user: User) -> Response:
    checkpointer = getattr(request.app.state, "checkpointer", None)
    status = actions.audit_status(deps=deps(request), last_check=getattr(checkpointer, "last_report", None))
    return render(request, "audit.html", user=user, ledger=status, verified=None)


@router.post("/audit/verify")
def verify(request: Request, user: User, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    """Verify the whole ledger now; the answer is the audit page with the report."""
    check_csrf(user, csrf)
    d = deps(request)
    checkpointer = getattr(request.app.state, "checkpointer", None)
    status = actions.audit_status(deps=d, last_check=getattr(checkpointer, "last_report", None))
    return render(request, "audit.html", user=user, ledger=status, verified=actions.verify_now(deps=d))


@router.get("/audit/export")
def export(request: Request, user: User) -> Response:
    """The whole ledger as JSON lines (the same entries as ``GET /v1/audit``), read a page at a time."""
    d = deps(request)

    def lines() -> Iterator[str]:
        after = -1
        while True:
            with d.sessions() as s:
                page = d.ledger.entries(s, after_seq=after, limit=EXPORT_PAGE)
            for e in page:
                yield e.model_dump_json().replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].seq

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"content-disposition": 'attachment; filename="glassgate-audit.ndjson"'})
