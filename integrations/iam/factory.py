"""Builds the executor's IAM adapter from the settings: the built-in store, or a vendor behind
:class:`agent.iam_bridge.VendorIam`, with the capability map of its configuration file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.approval import ApprovalRules
from agent.iam import BuiltinIam, IamAdapter
from agent.iam_bridge import VendorIam
from agent.iam_types import ActionMode, Capabilities, IamAction
from agent.iam_types import IamAdapter as VendorAdapter
from integrations import faults
from integrations.principals import ConfigError
from integrations.settings import Settings
from risk.policy import PolicySet

SHIPPED_CAPABILITIES = Path(__file__).with_name("capabilities.yaml")

A, R = ActionMode.APPLY, ActionMode.RECORD
_BASE = {IamAction.REVOKE_SESSION: {A, R}, IamAction.GRANT_EXCEPTION: {A, R}, IamAction.END_EXCEPTION: {A, R},
         IamAction.CONFIRM_DENIAL: {R}}
ALLOWED: dict[str, dict[IamAction, set[ActionMode]]] = {
    "okta": {**_BASE, IamAction.CONFIRM_DENIAL: {R, ActionMode.SUSPEND}},
    "entra": {**_BASE, IamAction.CONFIRM_DENIAL: {R, ActionMode.CONFIRM_COMPROMISED},
              IamAction.CONFIRM_BENIGN: {R, ActionMode.DISMISS}},
    "keycloak": dict(_BASE),
}


def load_capabilities(path: Path, vendor: str) -> Capabilities:
    """The capability map of ``vendor`` in the YAML file at ``path``.

    Raises:
        ConfigError: the file is unreadable, or names an unknown action or a mode the vendor cannot do.
    """
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the IAM capability map {path}: {exc}") from None
    section = (raw or {}).get(vendor) if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: no '{vendor}' section (a mapping of action kind to mode)")
    allowed = ALLOWED[vendor]
    modes: dict[IamAction, ActionMode] = {}
    for key, value in section.items():
        if key not in {a.value for a in allowed}:
            raise ConfigError(f"{path}: {vendor}.{key}: unknown action kind; one of {', '.join(a.value for a in allowed)}")
        action = IamAction(key)
        if value not in {m.value for m in allowed[action]}:
            raise ConfigError(f"{path}: {vendor}.{key}: {value!r} is not a mode the {vendor} adapter has; one of "
                              f"{', '.join(sorted(m.value for m in allowed[action]))}")
        modes[action] = ActionMode(value)
    if modes.get(IamAction.GRANT_EXCEPTION) is A and modes.get(IamAction.END_EXCEPTION) is not A:
        raise ConfigError(f"{path}: {vendor}.grant_exception is apply, so end_exception must be apply too "
                          "(an exception granted in the vendor must be removed there when it ends)")
    return Capabilities(modes=modes)


def build_vendor(settings: Settings) -> VendorAdapter | None:
    """The vendor adapter GLASSGATE_IAM names (None for the built-in store). Call after
    :meth:`Settings.iam_problems` came back empty."""
    if settings.iam == "builtin":
        return None
    caps = load_capabilities(settings.iam_capabilities or SHIPPED_CAPABILITIES, settings.iam)
    opts: dict[str, Any] = {"budget_s": settings.iam_budget_seconds}
    if settings.iam == "okta":
        from integrations.iam.okta import OktaIam, private_key_jwt_auth

        org = settings.okta_org_url or ""
        auth = None
        if settings.okta_private_key_path is not None:
            auth = private_key_jwt_auth(org_url=org, client_id=settings.okta_client_id or "",
                                        private_key_pem=settings.okta_private_key_path.read_text(),
                                        key_id=settings.okta_key_id)
        return OktaIam(org_url=org, api_token=settings.okta_api_token, auth=auth,
                       exception_group_id=settings.okta_exception_group_id or "", capabilities=caps, **opts)
    if settings.iam == "keycloak":
        from integrations.iam.keycloak import KeycloakIam

        return KeycloakIam(base_url=settings.keycloak_url or "", realm=settings.keycloak_realm or "",
                           client_id=settings.keycloak_client_id or "",
                           client_secret=settings.keycloak_client_secret or "",
                           exception_group_id=settings.keycloak_exception_group_id or "", capabilities=caps, **opts)
    from integrations.iam.entra import EntraIam, msal_token_source

    tokens = msal_token_source(settings)
    return EntraIam(graph_url=settings.entra_graph_url, tokens=tokens,
                    exception_group_id=settings.entra_exception_group_id or "", capabilities=caps, **opts)


def build_iam(settings: Settings, *, policy: PolicySet, rules: ApprovalRules) -> IamAdapter:
    """The adapter the executor calls: the built-in one, or the configured vendor with glassgate's record."""
    builtin = BuiltinIam(base_policy=policy, rules=rules)
    vendor = build_vendor(settings)
    if vendor is None:
        return builtin
    after_call = faults.hook(faults.parse(settings.failpoints), faults.Failpoint.AFTER_IAM_CALL)
    return VendorIam(vendor=vendor, builtin=builtin, after_call=after_call)
