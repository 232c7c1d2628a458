"""Slack user -> glassgate principal, by Slack user id from the principals configuration only.

Display names and e-mail addresses are chosen by the user (or a workspace admin) and can collide or
change; the Slack user id is stable and is what the signed payload carries, so it is the only key used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.approval import Principal, Role
from integrations.principals import ConfigError, PrincipalEntry


@dataclass(frozen=True)
class SlackDirectory:
    """The mapped Slack users: Slack user id -> principal."""

    by_slack_id: Mapping[str, Principal]

    @classmethod
    def from_entries(cls, entries: Mapping[str, PrincipalEntry]) -> SlackDirectory:
        """Index the principals that carry a ``slack_user_id``.

        Raises:
            ConfigError: two principals share a Slack user id (whose clicks would it be?).
        """
        out: dict[str, Principal] = {}
        for e in entries.values():
            if e.slack_user_id is None:
                continue
            if e.slack_user_id in out:
                raise ConfigError(f"principals: {out[e.slack_user_id].id} and {e.id} share slack_user_id "
                                  f"{e.slack_user_id}")
            out[e.slack_user_id] = Principal(id=e.id, roles=frozenset(e.roles))
        return cls(by_slack_id=out)

    def principal(self, slack_user_id: str) -> Principal | None:
        """The principal mapped to this Slack user id, or None."""
        return self.by_slack_id.get(slack_user_id)

    def asked_by(self, slack_user_id: str) -> str:
        """Who a question is recorded as asked by: the mapped principal's id, else ``slack:<user id>``."""
        p = self.principal(slack_user_id)
        return p.id if p is not None else f"slack:{slack_user_id}"

    def slack_ids_with(self, roles: frozenset[Role]) -> list[str]:
        """Slack user ids of the mapped principals holding any of ``roles`` (to notify on a proposal)."""
        return sorted(uid for uid, p in self.by_slack_id.items() if p.roles & roles)
