"""Settings, loaded once at the edge from the environment (GLASSGATE_*)."""

from __future__ import annotations

from pathlib import Path

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

    # --- safety core (i9a): resource catalogue, public links, fixed clock, header timeout, CLI identity
    resources: Path | None = None  # GLASSGATE_RESOURCES: the resource catalogue (YAML); the shipped demo one by default
    public_base_url: str | None = None  # GLASSGATE_PUBLIC_BASE_URL: base of links the service hands out (never Host)
    allow_fixed_clock: bool = False  # GLASSGATE_ALLOW_FIXED_CLOCK: tests/demos only; GLASSGATE_NOW is refused without it
    header_timeout_seconds: float = Field(default=10.0, gt=0)  # GLASSGATE_HEADER_TIMEOUT_SECONDS: request headers deadline
    jira_replay_window_seconds: int = Field(default=7 * 86400, gt=0)  # Jira deliveries: dedup retention window
    token: str | None = None  # GLASSGATE_TOKEN: the CLI acts as the principal whose token this is

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
