"""IAM adapter configuration: secrets refused at start when missing, placeholders or half configured; the
capability map checked against what each vendor adapter can do; the factory picks the adapter by settings."""

from __future__ import annotations

import pytest

from agent.iam import BuiltinIam
from agent.iam_bridge import VendorIam
from agent.iam_types import ActionMode, IamAction
from integrations.iam.factory import SHIPPED_CAPABILITIES, build_iam, load_capabilities
from integrations.principals import ConfigError
from integrations.settings import Settings
from tests.iam_support import rules

OKTA = {"iam": "okta", "okta_org_url": "https://acme.okta.com", "okta_api_token": "00aB3xYz9QwErTy7UiOp-real",
        "okta_exception_group_id": "00g1exc"}


def test_a_vendor_without_its_secrets_or_with_placeholders_is_refused_naming_each_variable():
    assert Settings(**OKTA).iam_problems() == []
    got = Settings(iam="okta").iam_problems()
    assert got == ["GLASSGATE_OKTA_ORG_URL is not set (GLASSGATE_IAM=okta needs it)",
                   "GLASSGATE_OKTA_API_TOKEN is not set (GLASSGATE_IAM=okta needs it)",
                   "GLASSGATE_OKTA_EXCEPTION_GROUP_ID is not set (GLASSGATE_IAM=okta needs it)"]
    (bad,) = Settings(**{**OKTA, "okta_api_token": "changeme"}).iam_problems()
    assert bad.startswith("GLASSGATE_OKTA_API_TOKEN is empty or a placeholder")
    (bad,) = Settings(**{**OKTA, "okta_org_url": "acme.okta.com"}).iam_problems()
    assert "GLASSGATE_OKTA_ORG_URL must be an http(s) URL" in bad
    assert Settings(**{**OKTA, "okta_api_token": "<your token>"}).channel_problems()  # the start-up check includes them


def test_entra_needs_a_secret_or_a_certificate_not_both(tmp_path):
    base = {"iam": "entra", "entra_tenant_id": "t", "entra_client_id": "c", "entra_exception_group_id": "g"}
    assert Settings(**base).iam_problems() == ["GLASSGATE_ENTRA_CLIENT_SECRET is not set (GLASSGATE_IAM=entra needs it)"]
    pem = tmp_path / "app.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n...\n")
    both = Settings(**base, entra_client_secret="s3cr3t-value-long-enough", entra_certificate_path=pem,
                    entra_certificate_thumbprint="AB12")
    assert both.iam_problems() == ["set GLASSGATE_ENTRA_CLIENT_SECRET or GLASSGATE_ENTRA_CERTIFICATE_PATH, not both"]
    half = Settings(**base, entra_certificate_path=pem)
    assert half.iam_problems() == ["GLASSGATE_ENTRA_CERTIFICATE_THUMBPRINT is not set (GLASSGATE_IAM=entra needs it)"]


def test_keycloak_and_servicenow_half_configured_are_refused():
    got = Settings(iam="keycloak", keycloak_url="https://sso.example.com", keycloak_realm="acme",
                   keycloak_client_id="glassgate", keycloak_client_secret="password",
                   keycloak_exception_group_id="g").iam_problems()
    assert len(got) == 1 and got[0].startswith("GLASSGATE_KEYCLOAK_CLIENT_SECRET is empty or a placeholder")
    got = Settings(servicenow_url="https://acme.service-now.com", servicenow_user="glassgate").iam_problems()
    assert got == ["GLASSGATE_SERVICENOW_PASSWORD is not set (GLASSGATE_SERVICENOW_URL needs it)"]


def test_the_shipped_capability_map_is_valid_for_every_vendor():
    for vendor in ("okta", "entra", "keycloak"):
        caps = load_capabilities(SHIPPED_CAPABILITIES, vendor)
        assert caps.mode(IamAction.GRANT_EXCEPTION) is ActionMode.APPLY
        assert caps.mode(IamAction.CONFIRM_DENIAL) is ActionMode.RECORD  # no vendor-side effect unless chosen


@pytest.mark.parametrize(("text", "says"), [
    ("okta:\n  grant_exception: apply\n  end_exception: record\n", "end_exception must be apply too"),
    ("okta:\n  confirm_denial: confirm_compromised\n", "not a mode the okta adapter has"),
    ("keycloak:\n  confirm_benign: dismiss\n", "unknown action kind"),
    ("entra:\n  revoke_session: apply\n", "no 'okta' section"),
])
def test_a_capability_map_the_adapter_cannot_honour_is_refused(tmp_path, text, says):
    f = tmp_path / "caps.yaml"
    f.write_text(text)
    vendor = "okta" if "okta" in text or "entra" in text else "keycloak"
    with pytest.raises(ConfigError, match=says):
        load_capabilities(f, vendor)


def test_the_factory_picks_the_adapter_by_settings(policy):
    assert isinstance(build_iam(Settings(), policy=policy, rules=rules()), BuiltinIam)
    iam = build_iam(Settings(**OKTA), policy=policy, rules=rules())
    assert isinstance(iam, VendorIam) and iam.name == "okta"
    assert iam.vendor.capabilities.mode(IamAction.REVOKE_SESSION) is ActionMode.APPLY


def test_okta_takes_an_api_token_or_a_service_app_key_not_both(tmp_path):
    key = tmp_path / "okta.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n...\n")
    app = {k: v for k, v in OKTA.items() if k != "okta_api_token"}
    assert Settings(**app, okta_client_id="0oa1app", okta_private_key_path=key).iam_problems() == []
    assert Settings(**app, okta_client_id="0oa1app").iam_problems() == [
        "GLASSGATE_OKTA_PRIVATE_KEY_PATH is not set (GLASSGATE_OKTA_CLIENT_ID needs it)"]
    assert Settings(**OKTA, okta_client_id="0oa1app", okta_private_key_path=key).iam_problems() == [
        "set GLASSGATE_OKTA_API_TOKEN or GLASSGATE_OKTA_CLIENT_ID/PRIVATE_KEY_PATH, not both"]
