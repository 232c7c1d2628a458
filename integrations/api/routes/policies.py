"""Threshold replay over HTTP: the ``replay_threshold`` tool (the one the agent uses before proposing a
change), with the policy named in the path and the scope and thresholds to try in the body."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from integrations.api.deps import Reader, SmallBody, ToolsDep
from integrations.api.errors import ProblemError, invalid, problem_responses
from tools.registry import ToolInputError, call_tool, get_tool

router = APIRouter(tags=["policies"])

_TOOL = "replay_threshold"
THRESHOLDS = ("step_up_at", "deny_at")


def _body_schema() -> dict[str, Any]:
    """The tool's input schema without ``policy_id`` (it is the path parameter)."""
    schema = get_tool(_TOOL).input_model.model_json_schema()
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "policy_id"}
    schema["required"] = [k for k in schema.get("required", []) if k != "policy_id"]
    schema["title"] = "ReplayIn"
    schema["description"] = "The threshold scope and the new threshold(s) to replay (at least one)."
    return schema


@router.post("/v1/policies/{policy_id}/replay",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": _body_schema()}}}},
             responses=problem_responses(400, 401, 403, 404, 413, 422))
def replay(policy_id: str, principal: Reader, tools: ToolsDep, raw: SmallBody) -> dict[str, Any]:
    """Replay new step-up/deny thresholds for one scope of a policy over every stored decision it governs:
    how many would change, broken down by analyst verdict and attack type, next to the thresholds in force."""
    if not isinstance(raw, dict):
        raise invalid([{"field": "(body)", "message": 'must be a JSON object, e.g. {"scope": "tier:restricted", '
                                                      '"deny_at": 0.7}'}])
    problems: list[dict[str, str]] = []
    if "policy_id" in raw:
        problems.append({"field": "policy_id", "message": "unknown field: the policy is named in the path"})
    args = {**raw, "policy_id": policy_id}
    try:
        # The tool's own input model, strictly: JSON true or "0.7" is not a threshold.
        get_tool(_TOOL).input_model.model_validate(args, strict=True)
    except ValidationError as exc:
        problems += [{"field": p.field, "message": p.message}
                     for p in ToolInputError.from_validation(_TOOL, exc).problems]
    if not any(raw.get(k) is not None for k in THRESHOLDS):
        problems += [{"field": k, "message": "name at least one threshold to replay"} for k in THRESHOLDS]
    if problems:
        raise invalid(problems)
    try:
        out = call_tool(tools, _TOOL, args)
    except ToolInputError as exc:
        if "policy_id" in exc.fields:  # the only thing wrong with the path's policy id is that it does not exist
            raise ProblemError(404, f"no policy {policy_id!r}", extra={"kind": "policy"}) from None
        raise invalid([{"field": p.field, "message": p.message} for p in exc.problems]) from None
    result: dict[str, Any] = out.model_dump(mode="json")
    return result
