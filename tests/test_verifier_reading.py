"""The verifier reads what people read: fullwidth, zero-width, soft-hyphen, bidi and homoglyph spellings of a
forbidden statement fail like the plain one, a word mixing scripts is refused, and action reports and
disputes are caught in paraphrase, while negated and hypothetical sentences and quoted evidence pass."""

from __future__ import annotations

import pytest

from agent.narrative import Audience, Evidence, Intent, Narrative
from agent.textnorm import fold, hidden_characters, mixed_script_words
from agent.verifier import verify

DENIED = {"decision_id": "dec-1", "event_id": "evt-1", "user_id": "alice", "resource_id": "payroll-db", "outcome": "deny",
          "risk": 0.91, "step_up_at": 0.5, "deny_at": 0.8, "rules": [], "policy_id": "POL-ACCESS-001", "policy_version": 1}


def _checks(text: str, decision: dict | None = None, **evidence) -> set[str]:
    ev = Evidence(intent=Intent.POLICY_LOOKUP if decision is None else Intent.WHY_DECISION, question="why?",
                  decision=decision, **evidence)
    report = verify(Narrative(audience=Audience.ANALYST, text=text, claims=[], citations=[], narrator="test"), ev)
    return {f.check for f in report.failures}


def test_fold_normalises_compatibility_forms_invisibles_and_confusables():
    assert fold("ｈａｓ ｂｅｅｎ ａｐｐｒｏｖｅｄ") == "has been approved"
    assert fold("has been appr\u200bo\u00adv\u2060ed") == "has been approved"
    assert fold("\u202eapproved\u202c \u2066ok\u2069") == "approved ok"
    assert fold("Prоpоsаl") == "Proposal"  # Cyrillic о and а
    assert fold("Zürich, 東京") == "Zürich, 東京"  # letters without an ASCII look-alike stay
    assert hidden_characters("a\u200bb\u00adc\u202e") == 3


def test_mixed_script_words_are_named_and_plain_words_in_any_one_script_are_not():
    assert mixed_script_words("the pаypal login of аlice") == ["pаypal", "аlice"]
    assert mixed_script_words("Zürich Москва Αθήνα 東京タワー plain") == []


PLAIN = "Proposal P-1 has been approved and applied."
SPELLINGS = {
    "fullwidth": "Proposal P-1 ｈａｓ ｂｅｅｎ ａｐｐｒｏｖｅｄ and applied.",
    "zero_width": "Proposal P-1 has been appr\u200boved and app\u200dlied.",
    "soft_hyphen": "Proposal P-1 has been ap\u00adproved and ap\u00adplied.",
    "bidi": "Proposal P-1 has been \u2066approved\u2069 and applied.",
}


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_a_disguised_action_claim_fails_like_the_plain_one(name):
    assert "action_claim" in _checks(PLAIN)
    assert "action_claim" in _checks(SPELLINGS[name])


def test_a_homoglyph_action_claim_fails_twice_as_a_claim_and_as_a_mixed_script_word():
    got = _checks("Proposal P-1 has been аpprоved.")
    assert {"action_claim", "script"} <= got


def test_a_mixed_script_word_quoted_from_the_evidence_is_data():
    ua = "Mozilla/5.0 pаypal-agent"
    assert "script" not in _checks("The user agent was pаypal-agent.", event={"device": {"user_agent": ua}})
    assert "script" in _checks("The user agent was pаypal-agent.", event={"device": {"user_agent": "Mozilla/5.0"}})


@pytest.mark.parametrize("text", [
    "Bob (policy_owner) signed off on P-12 and it has gone live.",
    "The exemption for alice on payroll-db was extended by a day.",
    "We relaxed the restricted-tier deny cut-off.",
    "Session s-1 was terminated and its user logged out.",
    "I went ahead and filed a confirm_denial request for dec-1.",
    "A copy of this answer went out to the general channel too.",
    "The block on alice has been lifted.",
    "The request was okayed by priya.",
    "Proposal P-1 was okayed, no further review needed.",
])
def test_action_reports_are_caught_in_paraphrase(text):
    assert "action_claim" in _checks(text)


@pytest.mark.parametrize("text", [
    "Nothing was applied; a proposal needs two approvals.",
    "No exception was granted.",
    "A confirm_denial proposal would need one policy owner.",
    "The failed attempts raised the risk above the deny threshold.",
    "If the device were managed, the request would be allowed.",
])
def test_negated_and_hypothetical_sentences_report_no_action(text):
    assert "action_claim" not in _checks(text)


def test_an_exception_in_force_grounds_the_statement_that_it_was_granted():
    text = "An exception for alice on payroll-db was granted by two policy owners."
    assert "action_claim" in _checks(text, DENIED)
    with_exception = {**DENIED, "exception": {"exception_id": "EXC-1", "section": "3", "policy_id": "POL-ACCESS-001"}}
    assert "action_claim" not in _checks(text, with_exception)


def test_a_recorded_revocation_grounds_the_statement_that_the_session_was_revoked():
    text = "The session was revoked by an approved proposal, so every later event in it is denied."
    assert "action_claim" in _checks(text, DENIED)
    rule = {"rule_id": "session-revoked", "policy_id": "POL-SES-006", "policy_version": 1, "effect": "deny",
            "section": "4-revoked-sessions", "description": "The session was revoked (proposal prop-1)."}
    revoked = {**DENIED, "rules": [rule]}
    assert "action_claim" not in _checks(text, revoked)
    # it grounds that statement only: another action reported as done still fails
    assert "action_claim" in _checks("An exception for alice on payroll-db was granted.", revoked)


@pytest.mark.parametrize("text", [
    "Honestly this block was an overreaction.",
    "The user poses no real risk.",
    "alice is safe to let through.",
    "alice should not have been blocked.",
    "The request was wrongly flagged.",
    "It looks like a false positive.",
])
def test_disputes_of_a_denial_are_caught_in_paraphrase(text):
    assert "contradiction" in _checks(text, DENIED)
    assert "contradiction" not in _checks(text, {**DENIED, "outcome": "allow"})  # nothing to dispute


def test_a_negated_dispute_and_a_hedged_tuning_remark_pass():
    assert "contradiction" not in _checks("This was not a mistake: the risk crossed the deny threshold.", DENIED)
    assert "contradiction" not in _checks("The threshold may be too strict for internal resources.")
    assert "contradiction" in _checks("That decision was a mistake.")  # no decision in the evidence to dispute
