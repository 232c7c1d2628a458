"""Use cases of the language model endpoint: is it configured, does it answer, what can it do."""

from __future__ import annotations

from pydantic import BaseModel

from agent.llm import LlmConfig
from agent.llm_probe import Probe, probe
from integrations.services.deps import ServiceDeps


class LlmStatus(BaseModel):
    configured: bool
    base_url: str | None = None
    model: str | None = None
    timeout_seconds: float
    max_tokens: int
    response_format: str
    probe: Probe | None = None

    @property
    def ok(self) -> bool:
        """Not configured (the offline narrator answers) is fine; configured means it must answer."""
        return not self.configured or bool(self.probe and self.probe.answers)


def llm_status(*, deps: ServiceDeps, timeout: float = 60.0) -> LlmStatus:
    """The configured endpoint and, when there is one, what it answers to (each probe a few tokens,
    bounded by ``timeout`` seconds or the configured timeout, whichever is shorter)."""
    st = deps.settings
    out = LlmStatus(configured=st.uses_llm, base_url=st.llm_base_url, model=st.llm_model,
                    timeout_seconds=st.llm_timeout_seconds, max_tokens=st.llm_max_tokens,
                    response_format=st.llm_response_format)
    if st.llm_base_url and st.llm_model:
        cfg = LlmConfig(timeout=min(timeout, st.llm_timeout_seconds), retries=0, response_format=st.llm_response_format)
        out.probe = probe(base_url=st.llm_base_url, model=st.llm_model, api_key=st.openai_api_key, cfg=cfg)
    return out
