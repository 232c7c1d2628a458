"""Which users and resources the store knows, so that names in a question are recognised only if real."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select

from risk.store.schema import DecisionRow
from tools.context import ToolContext
from tools.records import ToolInput


class KnownEntitiesInput(ToolInput):
    pass


class KnownEntitiesOutput(BaseModel):
    users: list[str]
    resources: list[str]


def known_entities(ctx: ToolContext, args: KnownEntitiesInput) -> KnownEntitiesOutput:
    """List the user and resource ids that have decisions; use it to recognise names in a question."""
    with ctx.sessions() as s:
        users = sorted(s.scalars(select(DecisionRow.user_id).distinct()))
        resources = sorted(s.scalars(select(DecisionRow.resource_id).distinct()))
    return KnownEntitiesOutput(users=users, resources=resources)
