"""The slack-bolt ``App`` over a Runtime: request signing, de-duplication of retried events, listeners.

* Signing: bolt verifies Slack's v0 signature (HMAC-SHA256 over ``v0:{timestamp}:{body}`` with the signing
  secret, timestamp within five minutes) before anything else runs; a bad or stale one gets 401.
* Acknowledgement: ``process_before_response=False``. Bolt acknowledges an Events API request as soon as a
  listener matches and runs the listener on its executor after the HTTP response; action and view
  listeners call ``ack()`` first (a view's ack carries its validation errors) and do the slow work after.
* Retries: Slack re-sends an event it thinks was not acknowledged (``X-Slack-Retry-Num``) with the same
  ``event_id``. Each event id is recorded in ``inbound_deliveries`` (channel ``slack``) by a middleware
  before any listener runs; a delivery already recorded is acknowledged with 200 and goes no further.
* Authorization: the bot's identity comes from one ``auth.test`` call, made on the first signed request and
  cached (not at start-up, so the service starts without reaching Slack).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from sqlalchemy.exc import IntegrityError

from integrations.principals import PrincipalEntry
from integrations.runtime import Runtime
from integrations.slack.identity import SlackDirectory
from integrations.slack.listeners import Listeners
from risk.store.service import DeliveryRow

log = logging.getLogger("glassgate.slack")
CHANNEL = "slack"


def first_delivery(rt: Runtime, delivery_id: str) -> bool:
    """Record an inbound Slack delivery; False when it was recorded before (a retry: do nothing)."""
    now: datetime = rt.clock()
    try:
        with rt.sessions.begin() as s:
            s.add(DeliveryRow(channel=CHANNEL, delivery_id=delivery_id[:200], received_ms=int(now.timestamp() * 1000),
                              job_id=None))
    except IntegrityError:
        return False
    return True


def _authorizer(client: WebClient, token: str) -> Callable[..., AuthorizeResult]:
    lock = threading.Lock()
    cached: list[AuthorizeResult] = []

    def authorize(**_: Any) -> AuthorizeResult:
        with lock:
            if not cached:
                cached.append(AuthorizeResult.from_auth_test_response(auth_test_response=client.auth_test(),
                                                                      bot_token=token))
            return cached[0]

    return authorize


def build_slack_app(rt: Runtime, *, entries: Mapping[str, PrincipalEntry], deps: Any = None) -> App:
    """The bolt app for ``rt``: signing secret and bot token from its settings, Web API calls to
    ``settings.slack_api_url``, principals (for Slack user id mapping) from ``entries``.

    Raises:
        ConfigError: two principals share a Slack user id.
        ValueError: the signing secret or bot token is missing (create_app refuses that earlier).
    """
    st = rt.settings
    if not st.slack_signing_secret or not st.slack_bot_token:
        raise ValueError("SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN must both be set for the Slack app")
    base_url = st.slack_api_url if st.slack_api_url.endswith("/") else st.slack_api_url + "/"
    # The app's client carries no token: bolt gives each request a client with the authorized bot token.
    client = WebClient(base_url=base_url, timeout=15)
    app = App(signing_secret=st.slack_signing_secret, client=client,
              authorize=_authorizer(WebClient(token=st.slack_bot_token, base_url=base_url, timeout=15),
                                    st.slack_bot_token), process_before_response=False,
              logger=log, name="glassgate")

    def dedupe(body: dict[str, Any], next_: Callable[[], Any]) -> Any:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id and not first_delivery(rt, event_id):
            log.info("slack event %s delivered again; already handled", event_id)
            return BoltResponse(status=200, body="")
        return next_()

    app.use(dedupe)
    Listeners(rt=rt, directory=SlackDirectory.from_entries(entries), deps=deps).register(app)
    return app
