"""Screenshots of the dashboard's main pages: ``python -m evals.screenshots [--out docs/img]`` (``make screenshots``).

Builds a small demo home in a temporary directory (the same ``run_demo`` as ``glassgate demo``, fewer users
and days), serves it on 127.0.0.1, signs in as the demo's policy owner in Debian's chromium (driven by
playwright; nothing is downloaded) and writes one PNG per page.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from integrations.api import create_app
from integrations.demo import MARKER, DemoResult, run_demo, write_principals
from integrations.runtime import Runtime
from integrations.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WIDTH = 1280


def _serve(rt: Runtime) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not start within 60 s")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def _shoot(page: Any, path: Path, *, full: bool = True) -> None:
    from PIL import Image  # matplotlib's dependency

    page.screenshot(path=str(path), full_page=full)
    with Image.open(path) as img:  # a 256-colour palette: a third of the size, the same to the eye
        img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--home", type=Path, default=None,
                    help="keep the demo home here and reuse it on the next run (default: a temporary one)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright  # a dev dependency: only this command needs it

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="glassgate-shots-") as tmp:
        home = args.home or Path(tmp) / "home"
        rt = Runtime(Settings(home=home, database_url=None))
        if (home / MARKER).exists():  # a home an earlier run built: new tokens, same world
            marker = json.loads((home / MARKER).read_text())
            result = DemoResult(summary=marker["summary"], examples=marker["examples"], tokens=write_principals(rt),
                                proposal_id=marker["proposal_id"])
        else:
            print("building a small demo home (generate, train, replay)...", file=sys.stderr)
            result = run_demo(rt, users=80, days=12, seed=7, test_days=4, stage=lambda _d, _t: (lambda _n: None))
        rt = Runtime(Settings(home=home, database_url=None))
        server, base = _serve(rt)
        try:
            _capture(base, result, rt, args.out, sync_playwright)
        finally:
            server.should_exit = True


def _capture(base: str, result: Any, rt: Runtime, out: Path, sync_playwright: Any) -> None:
    examples = result.examples
    decision = next((examples[k] for k in ("impossible_travel_denied", "mfa_fatigue", "bulk_export", "deny_example",
                                           "step_up_example") if k in examples), None)
    session = examples.get("posture_degraded_session")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900}, device_scale_factor=1)
        page.set_default_timeout(300_000)  # the first narrative of a process builds the policy index
        page.goto(f"{base}/ui/login")
        page.fill("#token", result.tokens["bob"])
        page.click("button[type=submit]")
        page.wait_for_selector("#live[data-state=open]")
        # a few events arriving live, so the feed shows fresh rows as an analyst sees them
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {result.tokens['ingest-gw']}"},
                          timeout=300) as c:
            with rt.sessions() as s:
                from risk.store.schema import DecisionRow
                latest = s.query(DecisionRow).order_by(DecisionRow.seq.desc()).limit(3).all()
                fresh = [{**d.event, "event_id": d.event_id + "-live"} for d in latest]
            for ev in fresh:
                c.post("/v1/events", json=ev).raise_for_status()
        page.wait_for_selector("tr.fresh")
        _shoot(page, out / "feed.png", full=False)
        if decision:
            page.goto(f"{base}/ui/decisions/{decision}")
            page.wait_for_selector(".narr")
            _shoot(page, out / "decision.png")
        if session:
            page.goto(f"{base}/ui/sessions/{session}")
            _shoot(page, out / "session.png", full=False)
        page.goto(f"{base}/ui/whatif?target=POL-ACCESS-001%7Ctier%3Arestricted&step_up_at=0.2&deny_at=0.5")
        page.wait_for_selector("#replay-summary")
        page.click("text=Draft this change for approval")
        page.wait_for_selector(".proposal")
        _shoot(page, out / "approvals.png")
        page.goto(f"{base}/ui/whatif?target=POL-ACCESS-001%7Ctier%3Arestricted&step_up_at=0.2&deny_at=0.5")
        _shoot(page, out / "whatif.png")
        page.goto(f"{base}/ui/audit")
        page.click("text=Verify the whole ledger")
        page.wait_for_selector("#verified")
        _shoot(page, out / "audit.png", full=False)
        browser.close()


if __name__ == "__main__":
    main()
