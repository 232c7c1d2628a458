"""The Slack listeners: questions (mentions and direct messages), decision buttons, the exception modal,
and Approve / Reject on proposals.

Asking, drafting and deciding go through the one path every channel uses: ``integrations.services.ask``,
the ``propose_action`` / ``get_decision`` / ``session_timeline`` tools of the registry, and
``integrations.services.proposals.decide`` with ``Channel.SLACK`` (the approval rules of POL-EXC-007 decide,
exactly as over the API). A message's text only ever becomes a question; only a click or a modal
submission by a mapped principal drafts or decides anything, and an unmapped user's question never drafts
a proposal (they can ask, not originate).

Where proposals go: a proposal drafted in Slack (from a button or the modal, or by the agent in an answer)
is posted in the thread it was requested in, mentioning the mapped principals whose roles may decide it.
Refusals are told only to the person who clicked (an ephemeral reply through the payload's response_url).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from agent.approval import Channel, Kind, Principal
from integrations.runtime import Runtime
from integrations.services.ask import ask, new_thread_id
from integrations.services.deps import ServiceDeps
from integrations.services.proposals import Outcome, decide
from integrations.slack import blocks as ui
from integrations.slack.identity import SlackDirectory
from risk.store.control import ProposalRow
from tools.context import ToolContext
from tools.decisions import GetDecisionOutput
from tools.errors import ToolInputError, ToolNotFound
from tools.registry import call_tool

log = logging.getLogger("glassgate.slack")
QUESTION_MAX = 2000
MODAL_FIELDS = {"resource_id": ui.RESOURCE, "duration_hours": ui.DURATION, "reason": ui.REASON}


@dataclass
class Listeners:
    rt: Runtime
    directory: SlackDirectory
    deps: ServiceDeps | None = None  # the app's (sharing its write lock); built from ``rt`` when not given

    def register(self, app: App) -> None:
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.action(ui.CONFIRM_DENIAL)(self.on_confirm_denial)
        app.action(ui.REQUEST_EXCEPTION)(self.on_request_exception)
        app.action(ui.SHOW_TIMELINE)(self.on_show_timeline)
        app.action(ui.APPROVE)(self.on_approve)
        app.action(ui.REJECT)(self.on_reject)
        app.view(ui.EXCEPTION_MODAL)(self.on_exception_submitted)

    @cached_property
    def services(self) -> ServiceDeps:
        return self.deps if self.deps is not None else ServiceDeps.from_runtime(self.rt)

    @cached_property
    def tools(self) -> ToolContext:
        return self.rt.tool_context(with_index=False, with_model=False)

    # ------------------------------------------------------------------ questions

    def on_mention(self, event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        text = event.get("text") or ""
        if context.bot_user_id:
            text = text.replace(f"<@{context.bot_user_id}>", " ")
        self._answer(client, channel=event["channel"], thread_ts=event.get("thread_ts") or event["ts"],
                     user=event["user"], question=text)

    def on_message(self, event: dict[str, Any], client: WebClient) -> None:
        # Direct messages only; edits, joins and other subtypes, and messages from bots, are not questions.
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return
        self._answer(client, channel=event["channel"], thread_ts=event.get("thread_ts") or event["ts"],
                     user=event["user"], question=event.get("text") or "")

    def _answer(self, client: WebClient, *, channel: str, thread_ts: str, user: str, question: str) -> None:
        question = " ".join(question.split())[:QUESTION_MAX]
        if not question:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                    text="Ask me about an access decision, e.g. why was alice denied at 10:32?")
            return
        try:
            out = ask(deps=self.services, question=question, asked_by=self.directory.asked_by(user),
                      thread_id=new_thread_id("slack"), can_propose=self.directory.principal(user) is not None)
            got = self._decision(out["decision_ids"][0]) if out["decision_ids"] else None
            body = ui.answer_blocks(out, got)
        except Exception as exc:  # noqa: BLE001 - the analyst is told it failed; the cause goes to the log
            log.exception("slack: answering a question failed")
            client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                    text=f"I could not answer that ({type(exc).__name__}); the error is logged.")
            return
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=ui.esc(out["answer"])[:300], blocks=body,
                                unfurl_links=False, unfurl_media=False)
        if out.get("proposal"):
            self._post_proposal(client, channel=channel, thread_ts=thread_ts, rec=out["proposal"])

    # ------------------------------------------------------------------ decision buttons

    def on_confirm_denial(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        principal = self._mapped(body, respond, "draft a proposal")
        if principal is None:
            return
        got = self._clicked_decision(body, respond)
        if got is None:
            return
        self._draft_and_post(client, respond, principal, kind=Kind.CONFIRM_DENIAL,
                             payload={"decision_id": got.decision.decision_id}, evidence=_evidence_of(got),
                             where=_thread_of(body))

    def on_request_exception(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        principal = self._mapped(body, respond, "request an exception")
        if principal is None:
            return
        got = self._clicked_decision(body, respond)
        if got is None:
            return
        channel, thread_ts = _thread_of(body)
        meta = json.dumps({"decision_id": got.decision.decision_id, "channel": channel, "thread_ts": thread_ts})
        cap = self.rt.approval_rules.kinds[Kind.GRANT_EXCEPTION].max_duration_hours
        client.views_open(trigger_id=body["trigger_id"],
                          view=ui.exception_modal(got, max_hours=cap, private_metadata=meta))

    def on_show_timeline(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        got = self._clicked_decision(body, respond)
        if got is None:
            return
        tl = call_tool(self.tools, "session_timeline", {"session_id": got.decision.session_id})
        channel, thread_ts = _thread_of(body)
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=f"Timeline of session {tl.session_id}",
                                blocks=ui.timeline_blocks(tl))

    def on_exception_submitted(self, ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        values = view.get("state", {}).get("values", {})

        def field(block: str) -> str:
            return str((values.get(block, {}).get("value") or {}).get("value") or "").strip()

        meta = json.loads(view.get("private_metadata") or "{}")
        principal = self.directory.principal(body["user"]["id"])
        if principal is None:
            ack(response_action="errors", errors={ui.REASON: _unmapped_text("request an exception")[:300]})
            return
        errors: dict[str, str] = {}
        try:
            hours = float(field(ui.DURATION))
            if not math.isfinite(hours):
                raise ValueError(hours)
        except ValueError:
            errors[ui.DURATION] = "Enter the duration as a number of hours, e.g. 8"
        got = self._decision(str(meta.get("decision_id", "")))
        if got is None:
            errors[ui.RESOURCE] = "The decision this request was opened from no longer exists"
        if errors:
            ack(response_action="errors", errors=errors)
            return
        assert got is not None
        payload = {"user_id": got.decision.user_id, "resource_id": field(ui.RESOURCE), "duration_hours": hours,
                   "reason": field(ui.REASON)}
        try:
            rec = self._draft(principal, Kind.GRANT_EXCEPTION, payload, _evidence_of(got))
        except ToolInputError as exc:
            ack(response_action="errors", errors=_modal_errors(exc))
            return
        ack()
        self._post_proposal(client, channel=meta["channel"], thread_ts=meta["thread_ts"], rec=rec)

    # ------------------------------------------------------------------ approve / reject

    def on_approve(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        self._decide(ack, body, client, respond, approve=True)

    def on_reject(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        self._decide(ack, body, client, respond, approve=False)

    def _decide(self, ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond, *, approve: bool) -> None:
        ack()
        pid = str(body["actions"][0].get("value") or "")
        verb = "approve" if approve else "reject"
        principal = self.directory.principal(body["user"]["id"])
        if principal is None:
            _tell(respond, _unmapped_text(f"{verb} a proposal") + f" Approvals follow {self._cite_for(pid)}. "
                  "Nothing was changed.")
            return
        got = decide(deps=self.services, proposal_id=pid, principal=principal, approve=approve, channel=Channel.SLACK)
        if got.outcome is Outcome.REFUSED:
            assert got.refusal is not None
            _tell(respond, f"You could not {verb} `{ui.esc(pid)}` [{got.refusal.value}]: "
                  f"{ui.esc(got.message or '')}. Nothing was changed.")
            return
        assert got.proposal is not None
        rec = got.proposal.model_dump(mode="json")
        channel, _ = _thread_of(body)
        client.chat_update(channel=channel, ts=body["message"]["ts"], text=f"Proposal {pid}: {rec['status']}",
                           blocks=self._proposal_blocks(rec))

    # ------------------------------------------------------------------ shared steps

    def _decision(self, decision_id: str) -> GetDecisionOutput | None:
        try:
            out: GetDecisionOutput = call_tool(self.tools, "get_decision", {"decision_id": decision_id})
        except (ToolNotFound, ToolInputError):
            return None
        return out

    def _clicked_decision(self, body: dict[str, Any], respond: Respond) -> GetDecisionOutput | None:
        did = str(body["actions"][0].get("value") or "")
        got = self._decision(did)
        if got is None:
            _tell(respond, f"There is no decision `{ui.esc(did)}`.")
        return got

    def _mapped(self, body: dict[str, Any], respond: Respond, what: str) -> Principal | None:
        principal = self.directory.principal(body["user"]["id"])
        if principal is None:
            _tell(respond, _unmapped_text(what) + " You can still ask questions.")
        return principal

    def _draft(self, principal: Principal, kind: Kind, payload: dict[str, Any],
               evidence: dict[str, Any]) -> dict[str, Any]:
        ctx = dataclasses.replace(self.tools, principal=principal.id)
        out = call_tool(ctx, "propose_action", {"kind": kind.value, "payload": payload, "evidence": evidence})
        rec: dict[str, Any] = out.proposal
        return rec

    def _draft_and_post(self, client: WebClient, respond: Respond, principal: Principal, *, kind: Kind,
                        payload: dict[str, Any], evidence: dict[str, Any], where: tuple[str, str]) -> None:
        try:
            rec = self._draft(principal, kind, payload, evidence)
        except ToolInputError as exc:
            _tell(respond, f"The {kind.value} could not be drafted: {ui.esc(exc)}")
            return
        self._post_proposal(client, channel=where[0], thread_ts=where[1], rec=rec)

    def _proposal_blocks(self, rec: dict[str, Any]) -> list[dict[str, Any]]:
        kind = Kind(rec["kind"])
        rules = self.rt.approval_rules
        return ui.proposal_blocks(rec, cite=rules.cite(kind), notify=self.directory.slack_ids_with(rules.kinds[kind].roles))

    def _post_proposal(self, client: WebClient, *, channel: str, thread_ts: str, rec: dict[str, Any]) -> None:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                text=f"Proposal {rec['proposal_id']} ({rec['kind']}) is {rec['status']}",
                                blocks=self._proposal_blocks(rec))

    def _cite_for(self, proposal_id: str) -> str:
        rules = self.rt.approval_rules
        with self.rt.sessions() as s:
            row = s.get(ProposalRow, proposal_id)
            kind = Kind(row.kind) if row is not None else None
        return rules.cite(kind) if kind is not None else f"{rules.policy_id} v{rules.policy_version}"


def _thread_of(body: dict[str, Any]) -> tuple[str, str]:
    """The channel and thread of the message whose button was clicked."""
    msg = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
    return channel, msg.get("thread_ts") or msg.get("ts") or body["container"]["message_ts"]


def _evidence_of(got: GetDecisionOutput) -> dict[str, Any]:
    d = got.decision
    return {"decision_id": d.decision_id, "user_id": d.user_id, "resource_id": d.resource_id,
            "outcome": str(d.outcome), "risk": round(d.risk, 4), "step_up_at": d.step_up_at, "deny_at": d.deny_at,
            "threshold_policy": f"{d.policy_id} v{d.policy_version} §{d.threshold_section}",
            "top_drivers": got.explanation.top_drivers[:3], "requested_in": "slack"}


def _modal_errors(exc: ToolInputError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for p in exc.problems:
        block = MODAL_FIELDS.get(p.field.removeprefix("payload.").split(".")[0], ui.REASON)
        errors.setdefault(block, p.message[:300])
    return errors


def _unmapped_text(what: str) -> str:
    return (f"You cannot {what}: your Slack user is not mapped to a glassgate principal (principals are matched "
            "by Slack user id in the principals configuration, never by name or e-mail).")


def _tell(respond: Respond, text: str) -> None:
    """Tell only the person who clicked."""
    respond(text=text, response_type="ephemeral", replace_original=False)
