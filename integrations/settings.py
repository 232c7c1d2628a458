"""Settings, loaded once at the edge from the environment (GLASSGATE_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, AwareDatetime, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import knowledge

SHIPPED_PRINCIPALS = Path(__file__).parent / "demo-principals.yaml"  # ids and roles only: no tokens
SHIPPED_RESOURCES = Path(__file__).parent / "resources.yaml"  # the demo world's resources and their tiers


class Settings(BaseSettings):
    """Where glassgate keeps its state and how it reaches its stores."""

    model_config = SettingsConfigDict(env_prefix="GLASSGATE_", extra="ignore")

    home: Path = Path(".glassgate")
    database_url: str | None = None
    policy_dir: Path = knowledge.POLICY_DIR
    config: Path | None = None  # principals and roles (GLASSGATE_CONFIG); the shipped demo file by default
    chroma_url: str | None = None  # a chroma server; embedded under GLASSGATE_HOME/chroma by default
    llm_base_url: str | None = None
    llm_model: str | None = None
    openai_api_key: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "GLASSGATE_OPENAI_API_KEY"))
    tz: str = "UTC"  # how "this morning" is read
    now: AwareDatetime | None = None  # GLASSGATE_NOW: a fixed clock, to replay or demo "as of" a moment

    # --- the service's channels. A channel is switched on by setting its secret; a set-but-empty or
    # placeholder secret is refused at start-up (see channel_problems), never silently accepted.
    webhook_secrets: str | None = None  # GLASSGATE_WEBHOOK_SECRETS: comma-separated whsec_... (rotation)
    jira_webhook_secret: str | None = None  # GLASSGATE_JIRA_WEBHOOK_SECRET: X-Hub-Signature HMAC key
    jira_url: str | None = None  # GLASSGATE_JIRA_URL: post enrichments as Jira Cloud comments when set
    jira_email: str | None = None  # GLASSGATE_JIRA_EMAIL (basic auth user)
    jira_api_token: str | None = None  # GLASSGATE_JIRA_API_TOKEN
    slack_signing_secret: str | None = Field(default=None, validation_alias=AliasChoices(
        "SLACK_SIGNING_SECRET", "GLASSGATE_SLACK_SIGNING_SECRET"))
    slack_bot_token: str | None = Field(default=None, validation_alias=AliasChoices(
        "SLACK_BOT_TOKEN", "GLASSGATE_SLACK_BOT_TOKEN"))
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias=AliasChoices(
        "SLACK_API_URL", "GLASSGATE_SLACK_API_URL"))
    checkpoint_seconds: float = Field(default=60.0, gt=0)  # GLASSGATE_CHECKPOINT_SECONDS: audit witness cadence
    worker_poll_seconds: float = 0.5  # GLASSGATE_WORKER_POLL_SECONDS: how often the job worker looks for work
    failpoints: str | None = None  # GLASSGATE_FAILPOINTS: test hook only (integrations/faults.py), off by default
    # --- the language model (i15): every call bounded; a small CPU model needs minutes, not the openai default
    llm_timeout_seconds: float = Field(default=120.0, gt=0)  # GLASSGATE_LLM_TIMEOUT_SECONDS, per call
    llm_retries: int = Field(default=0, ge=0, le=5)  # GLASSGATE_LLM_RETRIES: a local server queues retries
    llm_max_tokens: int = Field(default=700, ge=16)  # GLASSGATE_LLM_MAX_TOKENS: a narrator reply (3 sentences x 4 claims)
    llm_plan_max_tokens: int = Field(default=200, ge=16)  # GLASSGATE_LLM_PLAN_MAX_TOKENS: a make_plan call
    llm_response_format: Literal["json_object_schema", "json_schema", "json_object"] = "json_object_schema"
    llm_tool_calls: int = Field(default=0, ge=0, le=8)  # GLASSGATE_LLM_TOOL_CALLS: read-only tool calls per question

    # --- safety core (i9a): resource catalogue, public links, fixed clock, header timeout, CLI identity
    resources: Path | None = None  # GLASSGATE_RESOURCES: the resource catalogue (YAML); the shipped demo one by default
    public_base_url: str | None = None  # GLASSGATE_PUBLIC_BASE_URL: base of links the service hands out (never Host)
    allow_fixed_clock: bool = False  # GLASSGATE_ALLOW_FIXED_CLOCK: tests/demos only; GLASSGATE_NOW is refused without it
    header_timeout_seconds: float = Field(default=10.0, gt=0)  # GLASSGATE_HEADER_TIMEOUT_SECONDS: request headers deadline
    jira_replay_window_seconds: int = Field(default=7 * 86400, gt=0)  # Jira deliveries: dedup retention window
    token: str | None = None  # GLASSGATE_TOKEN: the CLI acts as the principal whose token this is
    # --- IAM adapters and ServiceNow (issue 12). GLASSGATE_IAM picks where approved actions are carried out;
    # a vendor's secrets are refused at start-up when empty, placeholders or half configured (iam_problems).
    iam: Literal["builtin", "okta", "entra", "keycloak"] = "builtin"  # GLASSGATE_IAM
    iam_capabilities: Path | None = None  # GLASSGATE_IAM_CAPABILITIES: YAML capability map; the shipped one else
    iam_budget_seconds: float = Field(default=10.0, gt=0)  # in-call retry budget of one vendor call
    iam_expiry_seconds: float = Field(default=30.0, gt=0)  # how often exceptions due to end are removed
    okta_org_url: str | None = None  # GLASSGATE_OKTA_ORG_URL, e.g. https://example.okta.com
    okta_api_token: str | None = None  # GLASSGATE_OKTA_API_TOKEN (SSWS), or the service app below
    okta_client_id: str | None = None  # OAuth 2.0 service app (private key JWT)
    okta_private_key_path: Path | None = None  # its PEM private key
    okta_key_id: str | None = None  # the key's kid, when the app has several
    okta_exception_group_id: str | None = None  # the group the sign-on policy excludes
    entra_tenant_id: str | None = None
    entra_client_id: str | None = None
    entra_client_secret: str | None = None  # a client secret, or the certificate below
    entra_certificate_path: Path | None = None  # PEM private key + certificate
    entra_certificate_thumbprint: str | None = None
    entra_exception_group_id: str | None = None  # the group the Conditional Access policy excludes
    entra_authority_host: str = "https://login.microsoftonline.com"
    entra_graph_url: str = "https://graph.microsoft.com"
    keycloak_url: str | None = None  # GLASSGATE_KEYCLOAK_URL, e.g. https://sso.example.com
    keycloak_realm: str | None = None
    keycloak_client_id: str | None = None  # a confidential client with a service account
    keycloak_client_secret: str | None = None
    keycloak_exception_group_id: str | None = None
    servicenow_url: str | None = None  # GLASSGATE_SERVICENOW_URL: post enrichments as ServiceNow work notes
    servicenow_user: str | None = None  # basic auth, or
    servicenow_password: str | None = None
    servicenow_token: str | None = None  # an OAuth bearer token
    servicenow_table: str = "incident"

    def iam_problems(self) -> list[str]:
        """Why the service must not start on the IAM / ServiceNow settings (each problem names the variable)."""
        problems: list[str] = []

        def need(name: str, value: str | None, *, secret: bool = False, by: str = f"GLASSGATE_IAM={self.iam}") -> None:
            if value is None or not value.strip():
                problems.append(f"GLASSGATE_{name} is not set ({by} needs it)")
            elif secret and is_placeholder(value):
                problems.append(f"GLASSGATE_{name} is empty or a placeholder ({_shown(value)}); set a real secret")

        def url(name: str, value: str | None) -> None:
            if value is not None and not value.startswith(("http://", "https://")):
                problems.append(f"GLASSGATE_{name} must be an http(s) URL, got {_shown(value)}")

        if self.iam == "okta":
            need("OKTA_ORG_URL", self.okta_org_url)
            url("OKTA_ORG_URL", self.okta_org_url)
            if self.okta_client_id is None and self.okta_private_key_path is None:
                need("OKTA_API_TOKEN", self.okta_api_token, secret=True)
            elif self.okta_api_token is not None:
                problems.append("set GLASSGATE_OKTA_API_TOKEN or GLASSGATE_OKTA_CLIENT_ID/PRIVATE_KEY_PATH, not both")
            else:
                need("OKTA_CLIENT_ID", self.okta_client_id)
                if self.okta_private_key_path is None:
                    problems.append("GLASSGATE_OKTA_PRIVATE_KEY_PATH is not set (GLASSGATE_OKTA_CLIENT_ID needs it)")
                elif not self.okta_private_key_path.is_file():
                    problems.append(f"GLASSGATE_OKTA_PRIVATE_KEY_PATH {self.okta_private_key_path} is not a file")
            need("OKTA_EXCEPTION_GROUP_ID", self.okta_exception_group_id)
        elif self.iam == "entra":
            for name in ("TENANT_ID", "CLIENT_ID", "EXCEPTION_GROUP_ID"):
                need(f"ENTRA_{name}", getattr(self, f"entra_{name.lower()}"))
            if self.entra_certificate_path is None:
                need("ENTRA_CLIENT_SECRET", self.entra_client_secret, secret=True)
            else:
                if self.entra_client_secret is not None:
                    problems.append("set GLASSGATE_ENTRA_CLIENT_SECRET or GLASSGATE_ENTRA_CERTIFICATE_PATH, not both")
                if not self.entra_certificate_path.is_file():
                    problems.append(f"GLASSGATE_ENTRA_CERTIFICATE_PATH {self.entra_certificate_path} is not a file")
                need("ENTRA_CERTIFICATE_THUMBPRINT", self.entra_certificate_thumbprint)
            url("ENTRA_AUTHORITY_HOST", self.entra_authority_host)
            url("ENTRA_GRAPH_URL", self.entra_graph_url)
        elif self.iam == "keycloak":
            need("KEYCLOAK_URL", self.keycloak_url)
            url("KEYCLOAK_URL", self.keycloak_url)
            need("KEYCLOAK_REALM", self.keycloak_realm)
            need("KEYCLOAK_CLIENT_ID", self.keycloak_client_id)
            need("KEYCLOAK_CLIENT_SECRET", self.keycloak_client_secret, secret=True)
            need("KEYCLOAK_EXCEPTION_GROUP_ID", self.keycloak_exception_group_id)
        if self.servicenow_url is not None:
            url("SERVICENOW_URL", self.servicenow_url)
            if self.servicenow_token is not None:
                need("SERVICENOW_TOKEN", self.servicenow_token, secret=True, by="GLASSGATE_SERVICENOW_URL")
                if self.servicenow_user is not None or self.servicenow_password is not None:
                    problems.append("set GLASSGATE_SERVICENOW_TOKEN or GLASSGATE_SERVICENOW_USER/PASSWORD, not both")
            else:
                need("SERVICENOW_USER", self.servicenow_user, by="GLASSGATE_SERVICENOW_URL")
                need("SERVICENOW_PASSWORD", self.servicenow_password, secret=True, by="GLASSGATE_SERVICENOW_URL")
        return problems

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("GLASSGATE_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @model_validator(mode="after")
    def _llm_needs_a_model(self) -> Settings:
        if self.llm_base_url and not self.llm_model:
            raise ValueError("GLASSGATE_LLM_MODEL must be set when GLASSGATE_LLM_BASE_URL is")
        return self

    @property
    def webhook_secret_list(self) -> list[str]:
        return [x.strip() for x in (self.webhook_secrets or "").split(",") if x.strip()]

    @property
    def slack_enabled(self) -> bool:
        return self.slack_signing_secret is not None or self.slack_bot_token is not None

    @property
    def jira_enabled(self) -> bool:
        return self.jira_url is not None

    def channel_problems(self) -> list[str]:
        """Why the service must not start: a channel switched on with an empty or placeholder secret, or
        half configured. Each problem names the variable."""
        problems: list[str] = []

        def check(name: str, value: str | None) -> None:
            if value is None:
                problems.append(f"{name} is not set")
            elif is_placeholder(value):
                problems.append(f"{name} is empty or a placeholder ({_shown(value)}); set a real secret")

        if self.webhook_secrets is not None:
            secrets = [x.strip() for x in self.webhook_secrets.split(",")]
            if not any(secrets):
                problems.append("GLASSGATE_WEBHOOK_SECRETS is set but empty; set whsec_... secrets or unset it")
            for i, sec in enumerate(secrets):
                if not sec.startswith("whsec_") or is_placeholder(sec.removeprefix("whsec_")):
                    problems.append(f"GLASSGATE_WEBHOOK_SECRETS item {i + 1} ({_shown(sec)}) is not a whsec_ "
                                    "secret with a real base64 key")
                elif (n := _key_bytes(sec.removeprefix("whsec_"))) is not None and n < MIN_WEBHOOK_KEY_BYTES:
                    problems.append(f"GLASSGATE_WEBHOOK_SECRETS item {i + 1} has a {n}-byte key; at least "
                                    f"{MIN_WEBHOOK_KEY_BYTES} random bytes are required")
        if self.jira_webhook_secret is not None:
            check("GLASSGATE_JIRA_WEBHOOK_SECRET", self.jira_webhook_secret)
            if not is_placeholder(self.jira_webhook_secret) and len(self.jira_webhook_secret) < MIN_JIRA_SECRET_CHARS:
                problems.append(f"GLASSGATE_JIRA_WEBHOOK_SECRET is {len(self.jira_webhook_secret)} characters; at "
                                f"least {MIN_JIRA_SECRET_CHARS} are required")
        if self.now is not None and not self.allow_fixed_clock:
            problems.append("GLASSGATE_NOW fixes the service's clock (approvals would never expire); it is for "
                            "tests and demos only: unset it, or set GLASSGATE_ALLOW_FIXED_CLOCK=1 to accept that")
        if self.slack_enabled:
            check("SLACK_SIGNING_SECRET", self.slack_signing_secret)
            check("SLACK_BOT_TOKEN", self.slack_bot_token)
        if self.jira_url is not None:
            if not self.jira_url.startswith(("http://", "https://")):
                problems.append(f"GLASSGATE_JIRA_URL must be an http(s) URL, got {_shown(self.jira_url)}")
            check("GLASSGATE_JIRA_EMAIL", self.jira_email)
            check("GLASSGATE_JIRA_API_TOKEN", self.jira_api_token)
        problems += self.iam_problems()
        return problems

    @property
    def uses_llm(self) -> bool:
        return bool(self.llm_base_url)

    @property
    def principals_path(self) -> Path:
        """GLASSGATE_CONFIG; else the file `glassgate demo` wrote into GLASSGATE_HOME; else the shipped demo
        file (ids and roles without tokens: nobody can authenticate to the API with it)."""
        if self.config is not None:
            return self.config
        written = self.home / "principals.yaml"
        return written if written.exists() else SHIPPED_PRINCIPALS

    @property
    def resources_path(self) -> Path:
        return self.resources if self.resources is not None else SHIPPED_RESOURCES

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

    @property
    def checkpoint_path(self) -> Path:
        return self.home / "checkpoints.db"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'glassgate.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def witness_path(self) -> Path:
        return self.home / "audit-witness.json"

    # --- audit ledger anchoring (i9b): what a disk-level attacker with write access to the database and
    # GLASSGATE_HOME cannot touch. Both default to a directory NEXT TO the home (<home>-audit/), never inside.
    audit_key_path: Path | None = None  # GLASSGATE_AUDIT_KEY_PATH: Ed25519 private key (PEM); .pub beside it
    audit_sink_path: Path | None = None  # GLASSGATE_AUDIT_SINK_PATH: append-only file of signed tree heads
    audit_sink_url: str | None = None  # GLASSGATE_AUDIT_SINK_URL: also POST each signed head there

    @property
    def audit_dir(self) -> Path:
        home = self.home.resolve()
        return home.parent / f"{home.name}-audit"

    @property
    def audit_key(self) -> Path:
        return self.audit_key_path or self.audit_dir / "ed25519.pem"

    @property
    def audit_sink(self) -> Path:
        return self.audit_sink_path or self.audit_dir / "heads.jsonl"

    @model_validator(mode="after")
    def _audit_anchors_outside_home(self) -> Settings:
        home = self.home.resolve()
        for name, path in (("GLASSGATE_AUDIT_KEY_PATH", self.audit_key), ("GLASSGATE_AUDIT_SINK_PATH", self.audit_sink)):
            if path.resolve().is_relative_to(home):
                raise ValueError(f"{name} ({path}) is inside GLASSGATE_HOME ({home}): whoever can write the home "
                                 "could then forge or rewrite the audit anchors; put it outside")
        if self.audit_sink_url is not None and not self.audit_sink_url.startswith(("http://", "https://")):
            raise ValueError("GLASSGATE_AUDIT_SINK_URL must be an http(s) URL")
        return self
    # --- vendor ingest and connectors (i11): decisions glassgate did not make, scored in shadow
    okta_hook_authorization: str | None = None  # GLASSGATE_OKTA_HOOK_AUTHORIZATION: the Authorization header value
    # configured on the Okta Event Hook; POST/GET /v1/ingest/okta answer 404 until it is set
    ingest_webhook_secrets: str | None = None  # GLASSGATE_INGEST_WEBHOOK_SECRETS: whsec_... for /v1/ingest/entra and
    # /v1/ingest/ocsf (comma-separated); GLASSGATE_WEBHOOK_SECRETS when unset
    # The connectors (`connector run okta|entra`) use the same org and credentials as the IAM adapters above
    # (GLASSGATE_OKTA_ORG_URL / _API_TOKEN with okta.logs.read; GLASSGATE_ENTRA_TENANT_ID / _CLIENT_ID /
    # _CLIENT_SECRET / _AUTHORITY_HOST with AuditLog.Read.All).
    graph_url: str = "https://graph.microsoft.com/v1.0"  # GLASSGATE_GRAPH_URL
    connector_poll_seconds: float = Field(default=60.0, gt=0)  # GLASSGATE_CONNECTOR_POLL_SECONDS
    connector_start: AwareDatetime | None = None  # GLASSGATE_CONNECTOR_START: first poll reads from here (default: 1 h ago)
    surrogate_min_fidelity: float = Field(default=0.8, ge=0, le=1)  # GLASSGATE_SURROGATE_MIN_FIDELITY

    @property
    def ingest_secret_list(self) -> list[str]:
        raw = self.ingest_webhook_secrets if self.ingest_webhook_secrets is not None else self.webhook_secrets
        return [x.strip() for x in (raw or "").split(",") if x.strip()]


MIN_WEBHOOK_KEY_BYTES = 24  # Standard Webhooks: secrets of 24 to 64 random bytes
MIN_JIRA_SECRET_CHARS = 32


def _key_bytes(b64: str) -> int | None:
    """The length of a base64 key in bytes, or None when it is not base64 (refused elsewhere, by name)."""
    import base64
    import binascii

    try:
        return len(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError):
        return None


def load_settings() -> Settings:
    return Settings()


PLACEHOLDERS = frozenset({"", "changeme", "change-me", "change_me", "placeholder", "secret", "password", "todo",
                          "xxx", "xxxx", "replace-me", "replaceme", "dummy", "example", "none", "null", "test"})


def is_placeholder(value: str) -> bool:
    v = value.strip().lower()
    return (v in PLACEHOLDERS or (v.startswith("<") and v.endswith(">")) or v.startswith(("your-", "your_"))
            or set(v) <= {"x", "*", "."} or "placeholder" in v or "changeme" in v)


def _shown(value: str) -> str:
    """A secret as it may appear in an error message: never more than its first four characters."""
    if len(value) <= 8:
        return "empty" if not value else f"{len(value)} characters"
    return repr(value[:4] + "…")
