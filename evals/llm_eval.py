"""``make eval-llm``: the local model measured. Starts the bundled model's server on 127.0.0.1 (the
``local-llm`` extra), runs ``glassgate eval`` with the LLM narrator beside the offline one on a few cases
(each LLM narrator score is given on the model's own draft and on what was shown after verification, with
fallback reasons, tokens and latency), then the injection cases against the real model (attack successes
before and after verification, :mod:`evals.injection_llm`).

``python -m evals.llm_eval [--cases 3] [--attacks 7] [--port 8089]``; exits 2 when the extra is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from integrations.local_llm import MODEL_ALIAS, LocalModelMissing, ensure_model, has_server, plan_server
from integrations.settings import load_settings


def start_server(*, home: Path, port: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The local model's server, answering on ``/v1/models``; (process, base URL)."""
    plan = plan_server(model=ensure_model(home / "models"), port=port)
    proc = subprocess.Popen(plan.command(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = plan.exports()["GLASSGATE_LLM_BASE_URL"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the model server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)  # the model loads in seconds; poll until it answers
    proc.terminate()
    raise RuntimeError(f"the model server did not answer within 300 s; see {log}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m evals.llm_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=3, help="world cases (the 5 edge cases come on top)")
    ap.add_argument("--attacks", type=int, default=7, help="injection cases against the real model (0: none)")
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    base = load_settings()
    if not has_server():
        print("error: llama-cpp-python[server] is not installed: pip install 'glassgate[local-llm]'", file=sys.stderr)
        return 2
    log = base.home / "reports" / "llm-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc, url = start_server(home=base.home, port=args.port, log=log)
    except LocalModelMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        settings = base.model_copy(update={"llm_base_url": url, "llm_model": MODEL_ALIAS, "llm_timeout_seconds": 300.0})
        from evals.run_eval import run_and_print

        code = run_and_print(base=settings, n_cases=args.cases, seed=args.seed, out=None)
        if args.attacks:
            from evals.injection_llm import run_against

            with tempfile.TemporaryDirectory(prefix="glassgate-injection-llm-") as tmp:
                run_against(base_url=url, model=MODEL_ALIAS, root=Path(tmp), n=args.attacks,
                            out=base.home / "reports" / "injection-llm")
        return code
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
