"""The TreeSHAP kernel against shap: ``python -m evals.bench_kernel [--quick]`` (also a section of ``make bench``).

Measures, on one model: the kernel's build time; the first call in a fresh process (numba's cache
loaded, nothing compiled); batch rows/s for the kernel, for shap on the whole batch and for shap row by
row; one row at a time for both; and the largest absolute difference from shap over every measured row.
Nothing asserts on timings; the machine is shared, so the ratios are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import shap

from risk.model import RiskModel
from risk.treeshap import HGBTreeShap

SIZES = {"full": dict(batch=20_000, shap_batch=2_000, single=300), "quick": dict(batch=2_000, shap_batch=300, single=50)}
FRESH = """
import sys, time, joblib
t0 = time.perf_counter()
from risk.treeshap import HGBTreeShap
t1 = time.perf_counter()
clf = joblib.load(sys.argv[1])
t2 = time.perf_counter()
k = HGBTreeShap(clf)
t3 = time.perf_counter()
import numpy as np
x = np.full((1, clf.n_features_in_), np.nan)
k.shap_values(x)
t4 = time.perf_counter()
k.shap_values(np.repeat(x, 2, axis=0))
t5 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3, t5 - t4)
"""


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def fresh_process(clf: Any) -> dict[str, float]:
    """Import, build and first calls (single row, batch) in a new interpreter, as a service start pays them."""
    with tempfile.TemporaryDirectory() as d:
        import joblib

        joblib.dump(clf, Path(d) / "clf.joblib")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run([sys.executable, "-c", FRESH, str(Path(d) / "clf.joblib")], capture_output=True,
                             text=True, env=env, check=True).stdout.split()
    imp, build, one, batch = (round(float(v), 3) for v in out)
    return {"import_s": imp, "build_s": build, "first_single_row_call_s": one, "first_batch_call_s": batch}


def bench_kernel(model: RiskModel, X: np.ndarray, mode: str = "full") -> dict[str, Any]:
    """Kernel vs shap on ``model`` over rows drawn from ``X`` (repeated if ``X`` is smaller than the batch)."""
    sz = SIZES[mode]
    Xb = np.resize(X, (sz["batch"], X.shape[1]))
    t = time.perf_counter()
    k = HGBTreeShap(model.clf)
    build_s = time.perf_counter() - t
    k.shap_values(Xb[:2]), k.shap_values(Xb[0])  # compile or load from the cache, outside the timings
    t = time.perf_counter()
    phi = k.shap_values(Xb)
    t_kernel = time.perf_counter() - t
    ex = shap.TreeExplainer(model.clf)
    Xs = Xb[: sz["shap_batch"]]
    t = time.perf_counter()
    ref = np.asarray(ex.shap_values(Xs, check_additivity=False)).reshape(Xs.shape)
    t_shap_batch = time.perf_counter() - t
    n1 = sz["single"]
    t = time.perf_counter()
    ref1 = [np.asarray(ex.shap_values(x[None, :], check_additivity=False)).reshape(-1) for x in Xb[:n1]]
    t_shap_one = time.perf_counter() - t
    t = time.perf_counter()
    ours1 = [k.shap_values(x)[0] for x in Xb[:n1]]
    t_kernel_one = time.perf_counter() - t
    diff = max(float(np.abs(phi[: len(Xs)] - ref).max()), float(np.abs(np.array(ours1) - np.array(ref1)).max()))
    kernel_rps, shap_rps, shap_row_rps = _rate(len(Xb), t_kernel), _rate(len(Xs), t_shap_batch), _rate(n1, t_shap_one)
    return {"model": {"trees": len(model.clf._predictors), "leaves": k.n_leaves, "features": k.n_features},
            "build_s": round(build_s, 3), "fresh_process": fresh_process(model.clf),
            "batch": {"rows": len(Xb), "kernel_rows_per_s": kernel_rps, "shap_batch_rows_per_s": shap_rps,
                      "shap_row_by_row_rows_per_s": shap_row_rps,
                      "ratio_over_shap_batch": round(kernel_rps / shap_rps, 1),
                      "ratio_over_shap_row_by_row": round(kernel_rps / shap_row_rps, 1)},
            "single_row": {"rows": n1, "kernel_us": round(t_kernel_one / n1 * 1e6, 1),
                           "shap_us": round(t_shap_one / n1 * 1e6, 1), "ratio": round(t_shap_one / t_kernel_one, 1)},
            "max_abs_diff_vs_shap": diff, "rows_with_missing_share": round(float(np.isnan(Xb).any(axis=1).mean()), 3),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> None:
    """Train the bench world's model and print the kernel figures as JSON."""
    from knowledge import POLICY_DIR
    from risk.policy import load_policies
    from risk.synth import generate_world
    from risk.training import train_on_world

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    mode = "quick" if ap.parse_args(argv).quick else "full"
    model, X, _ = train_on_world(generate_world(users=120, days=14, seed=3), load_policies(POLICY_DIR), test_days=4)
    print(json.dumps(bench_kernel(model, X, mode), indent=2))


if __name__ == "__main__":
    main()
