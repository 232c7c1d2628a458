"""An exact path-dependent TreeSHAP kernel for sklearn's HistGradientBoosting binary classifiers, in numba.

It computes the same values as ``shap.TreeExplainer(clf)`` (``feature_perturbation="tree_path_dependent"``,
log-odds output) by another route. For a leaf with value ``v`` whose root path tests the distinct features
``D`` (``d = |D|``), let ``b_j`` be the product of the cover ratios ``count(child) / count(parent)`` on the
path's edges that test feature ``j``, and ``a_j`` 1 when the row follows every one of those edges, else 0.
The leaf adds to feature ``i``::

    v * (a_i - b_i) * integral_0^1 prod_{j in D, j != i} (b_j + (a_j - b_j) t) dt

(the Shapley weights ``|S|! (d-|S|-1)! / d!`` are Beta integrals; Linear TreeShap, Yu et al. 2022). The
integrand is a polynomial of degree ``d - 1``, so Gauss-Legendre quadrature with ``ceil(d / 2)`` points is
exact. Everything except ``a_j`` depends on the model only and is precomputed when the kernel is built;
a row only decides which way it goes at each split. Rows are processed in blocks so the inner loops run
over contiguous rows and vectorise.

Splits follow sklearn's prediction on raw values: NaN goes where ``missing_go_to_left`` says, otherwise
``x <= num_threshold`` goes left. Categorical splits and multi-class models are not supported
(:class:`UnsupportedModel`; the caller falls back to shap).

numba compiles with ``cache=True``: the first process compiles (seconds), later ones load the cache from
``__pycache__`` beside this file, or from ``NUMBA_CACHE_DIR`` when that is not writable (set by
integrations, never read here). No ``fastmath``: it would drop the NaN checks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

BLOCK = 256  # rows per block: the working set (splits x rows bytes) stays in cache
PARALLEL_FROM = 4 * BLOCK  # rows from which blocks run on numba's threads; an event chunk stays on its thread


class UnsupportedModel(ValueError):
    """The model has a shape this kernel does not handle (the caller uses shap instead)."""


@njit(cache=True)
def _block(X, start, B, phi, margin, baseline, tree_noff, tree_loff, nfeat, nthr, ndefl, leaf_val, leaf_d, leaf_q,
           leaf_soff, leaf_coff, leaf_eoff, slot_feat, F0, dF, G0, dG, enode, ewant, eslot, dmax, qmax, nmax,
           block):  # pragma: no cover
    """Rows ``start .. start + B`` of ``X`` into ``phi`` and ``margin``, a tree at a time (its own scratch)."""
    nf = X.shape[1]
    reached = np.empty(block)
    Xt = np.empty((nf, block))
    gl = np.empty((nmax, block))  # 1.0 where the row goes left at a split of the current tree
    a = np.empty((dmax, block))  # 1.0 where the row follows every edge of a leaf's feature
    P = np.empty((qmax, block))
    acc = np.empty(block)
    phiT = np.zeros((nf, block))
    for r in range(B):
        for f in range(nf):
            Xt[f, r] = X[start + r, f]
    for r in range(B):
        margin[start + r] = baseline
    for tr in range(tree_noff.shape[0] - 1):
        no = tree_noff[tr]
        for s in range(tree_noff[tr + 1] - no):
            f, t, dl = nfeat[no + s], nthr[no + s], ndefl[no + s]
            for r in range(B):
                x = Xt[f, r]
                gl[s, r] = dl if x != x else (1.0 if x <= t else 0.0)
        for lf in range(tree_loff[tr], tree_loff[tr + 1]):
            d, q, so, co = leaf_d[lf], leaf_q[lf], leaf_soff[lf], leaf_coff[lf]
            a[:d, :B] = 1.0
            for e in range(leaf_eoff[lf], leaf_eoff[lf + 1]):
                s, j = enode[e], eslot[e]
                if ewant[e]:
                    for r in range(B):
                        a[j, r] *= gl[s, r]
                else:
                    for r in range(B):
                        a[j, r] *= 1.0 - gl[s, r]
            reached[:B] = leaf_val[lf]  # the row's leaf: every edge followed (sums as sklearn does, tree by tree)
            for j in range(d):
                for r in range(B):
                    reached[r] *= a[j, r]
            for r in range(B):
                margin[start + r] += reached[r]
            P[:q, :B] = 1.0
            for j in range(d):
                for k in range(q):
                    f0, df = F0[co + j * q + k], dF[co + j * q + k]
                    for r in range(B):
                        P[k, r] *= f0 + a[j, r] * df
            for j in range(d):
                acc[:B] = 0.0
                for k in range(q):
                    g0, dg = G0[co + j * q + k], dG[co + j * q + k]
                    for r in range(B):
                        acc[r] += P[k, r] * (g0 + a[j, r] * dg)
                fi = slot_feat[so + j]
                for r in range(B):
                    phiT[fi, r] += acc[r]
    for r in range(B):
        for f in range(nf):
            phi[start + r, f] = phiT[f, r]


@njit(cache=True)
def _kernel(X, baseline, tree_noff, tree_loff, nfeat, nthr, ndefl, leaf_val, leaf_d, leaf_q, leaf_soff, leaf_coff,
            leaf_eoff, slot_feat, F0, dF, G0, dG, enode, ewant, eslot, dmax, qmax, nmax, block):  # pragma: no cover
    """Contributions ``(n, F)`` and margins ``(n,)`` for the rows of ``X``, a block of rows at a time."""
    n, nf = X.shape
    phi = np.zeros((n, nf))
    margin = np.zeros(n)
    for start in range(0, n, block):
        _block(X, start, min(block, n - start), phi, margin, baseline, tree_noff, tree_loff, nfeat, nthr, ndefl,
               leaf_val, leaf_d, leaf_q, leaf_soff, leaf_coff, leaf_eoff, slot_feat, F0, dF, G0, dG, enode, ewant,
               eslot, dmax, qmax, nmax, block)
    return phi, margin


@njit(cache=True, parallel=True)
def _kernel_par(X, baseline, tree_noff, tree_loff, nfeat, nthr, ndefl, leaf_val, leaf_d, leaf_q, leaf_soff,
                leaf_coff, leaf_eoff, slot_feat, F0, dF, G0, dG, enode, ewant, eslot, dmax, qmax, nmax,
                block):  # pragma: no cover
    """The same, blocks spread over numba's threads (each block writes only its own rows)."""
    n, nf = X.shape
    phi = np.zeros((n, nf))
    margin = np.zeros(n)
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        start = b * block
        _block(X, start, min(block, n - start), phi, margin, baseline, tree_noff, tree_loff, nfeat, nthr, ndefl,
               leaf_val, leaf_d, leaf_q, leaf_soff, leaf_coff, leaf_eoff, slot_feat, F0, dF, G0, dG, enode, ewant,
               eslot, dmax, qmax, nmax, block)
    return phi, margin


@njit(cache=True)
def _kernel_one(x, baseline, tree_noff, tree_loff, nfeat, nthr, ndefl, leaf_val, leaf_d, leaf_q, leaf_soff,
                leaf_coff, leaf_eoff, slot_feat, F0, dF, G0, dG, enode, ewant, eslot, dmax, qmax, nmax):  # pragma: no cover
    """The same for one row, with scalar loops (a block of one would pay the loop overhead per leaf)."""
    phi = np.zeros(x.shape[0])
    margin = baseline
    gl = np.empty(nmax)
    a = np.empty(dmax)
    P = np.empty(qmax)
    for tr in range(tree_noff.shape[0] - 1):
        no = tree_noff[tr]
        for s in range(tree_noff[tr + 1] - no):
            v = x[nfeat[no + s]]
            gl[s] = ndefl[no + s] if v != v else (1.0 if v <= nthr[no + s] else 0.0)
        for lf in range(tree_loff[tr], tree_loff[tr + 1]):  # branch-free: which way a row goes is a coin flip
            d, q, so, co = leaf_d[lf], leaf_q[lf], leaf_soff[lf], leaf_coff[lf]
            for j in range(d):
                a[j] = 1.0
            for e in range(leaf_eoff[lf], leaf_eoff[lf + 1]):
                g, w = gl[enode[e]], ewant[e]
                a[eslot[e]] *= g * w + (1.0 - g) * (1.0 - w)
            reached = leaf_val[lf]
            for j in range(d):
                reached *= a[j]
            margin += reached
            for k in range(q):
                P[k] = 1.0
            for j in range(d):
                c, aj = co + j * q, a[j]
                for k in range(q):
                    P[k] *= F0[c + k] + aj * dF[c + k]
            for j in range(d):
                c, aj, acc = co + j * q, a[j], 0.0
                for k in range(q):
                    acc += P[k] * (G0[c + k] + aj * dG[c + k])
                phi[slot_feat[so + j]] += acc
    return phi, margin


def _leaf_paths(nodes: np.ndarray) -> list[tuple[float, list[tuple[int, int, int, float]]]]:
    """Per leaf: (value, [(split node, went left 1/0, feature, cover ratio), ...]) from the root."""
    out: list[tuple[float, list[tuple[int, int, int, float]]]] = []
    stack: list[tuple[int, list[tuple[int, int, int, float]]]] = [(0, [])]
    while stack:
        i, path = stack.pop()
        nd = nodes[i]
        if nd["is_leaf"]:
            out.append((float(nd["value"]), path))
            continue
        f, c = int(nd["feature_idx"]), float(nd["count"])
        for child, left in ((int(nd["left"]), 1), (int(nd["right"]), 0)):
            stack.append((child, [*path, (i, left, f, float(nodes[child]["count"]) / c)]))
    return out


class HGBTreeShap:
    """The kernel's model-dependent tables for one fitted ``HistGradientBoostingClassifier``.

    Attributes:
        base_value: the expected log-odds over the training covers (shap's ``expected_value``).
        n_features: the number of input columns.
    """

    def __init__(self, clf: Any):
        """Read the fitted predictors and precompute every per-split factor.

        Raises:
            UnsupportedModel: multi-class, categorical splits, or not a fitted HGB classifier.
        """
        preds = getattr(clf, "_predictors", None)
        if not preds or type(clf).__name__ != "HistGradientBoostingClassifier":
            raise UnsupportedModel("not a fitted HistGradientBoostingClassifier")
        if any(len(p) != 1 for p in preds):
            raise UnsupportedModel("multi-class models are not supported")
        self.n_features = int(clf.n_features_in_)
        tree_noff, tree_loff = [0], [0]
        nfeat: list[int] = []
        nthr: list[float] = []
        ndefl: list[float] = []
        leaf_val: list[float] = []
        leaf_d: list[int] = []
        leaf_q: list[int] = []
        leaf_soff: list[int] = []
        leaf_coff: list[int] = []
        leaf_eoff = [0]
        slot_feat: list[int] = []
        enode: list[int] = []
        ewant: list[int] = []
        eslot: list[int] = []
        F0: list[float] = []  # per leaf, feature and quadrature point: the factor when the row leaves the path
        dF: list[float] = []  # ... plus this when it follows it
        G0: list[float] = []  # the contribution weight (a - b) v w / factor, a = 0
        dG: list[float] = []  # ... plus this for a = 1
        baseline = float(np.asarray(clf._baseline_prediction).reshape(-1)[0])
        expected = baseline
        gauss: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for (tree,) in preds:
            nodes = tree.nodes
            if nodes["is_categorical"].any():
                raise UnsupportedModel("categorical splits are not supported")
            if (nodes["count"] <= 0).any():
                raise UnsupportedModel("a node without training samples has no cover ratio")
            nfeat += [max(int(f), 0) for f in nodes["feature_idx"]]  # leaves keep unused slots
            nthr += [float(t) for t in nodes["num_threshold"]]
            ndefl += [float(m) for m in nodes["missing_go_to_left"]]
            tree_noff.append(len(nfeat))
            for value, path in _leaf_paths(nodes):
                feats: dict[int, float] = {}
                for _, _, f, ratio in path:
                    feats[f] = feats.get(f, 1.0) * ratio
                order = list(feats)
                d = len(order)
                q = max(1, math.ceil(d / 2))  # exact for the degree d - 1 integrand
                if q not in gauss:
                    x, w = np.polynomial.legendre.leggauss(q)
                    gauss[q] = ((x + 1) / 2, w / 2)  # on [0, 1]
                t, w = gauss[q]
                leaf_val.append(value)
                leaf_d.append(d)
                leaf_q.append(q)
                leaf_soff.append(len(slot_feat))
                leaf_coff.append(len(F0))
                expected += value * math.prod(ratio for *_, ratio in path)  # the leaf's share of the samples
                for f in order:
                    b = feats[f]
                    f0, f1 = b * (1 - t), b + (1 - b) * t
                    g0, g1 = -value * b * w / f0, value * (1 - b) * w / f1
                    slot_feat.append(f)
                    F0 += f0.tolist()
                    dF += (f1 - f0).tolist()
                    G0 += g0.tolist()
                    dG += (g1 - g0).tolist()
                for node, left, f, _ in path:
                    enode.append(node)
                    ewant.append(left)
                    eslot.append(order.index(f))
                leaf_eoff.append(len(enode))
            tree_loff.append(len(leaf_d))
        self.base_value = expected
        i32, f64 = np.int32, np.float64
        self.n_leaves = len(leaf_d)
        self._tables = (
            baseline, np.array(tree_noff, i32), np.array(tree_loff, i32), np.array(nfeat, i32), np.array(nthr, f64),
            np.array(ndefl, f64), np.array(leaf_val, f64), np.array(leaf_d, i32), np.array(leaf_q, i32), np.array(leaf_soff, i32),
            np.array(leaf_coff, i32), np.array(leaf_eoff, i32), np.array(slot_feat, i32), np.array(F0, f64),
            np.array(dF, f64), np.array(G0, f64), np.array(dG, f64), np.array(enode, i32), np.array(ewant, f64),
            np.array(eslot, i32), max(max(leaf_d, default=1), 1), max(leaf_q, default=1),
            max(int(np.diff(tree_noff).max()), 1))
        # Load the compiled kernels now (a process's first load costs about a second), not on a first decision.
        self.shap_values(np.full((2, self.n_features), np.nan)), self.shap_values(np.full(self.n_features, np.nan))

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """Log-odds contributions ``(n, n_features)`` for the rows of ``X`` (NaN = missing)."""
        return self.explain(X)[0]

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contributions ``(n, n_features)`` and the model's margins ``(n,)``.

        The margin is the model's own prediction (``clf.decision_function``), computed on the way: the
        same splits and the same summation order, tree by tree, so it is equal to sklearn's bit for bit
        (tests check it), without sklearn's per-call threading and validation overhead.
        """
        X = np.ascontiguousarray(np.atleast_2d(X), dtype=np.float64)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} columns; the model expects {self.n_features}")
        if len(X) == 1:
            phi, margin = _kernel_one(X[0], *self._tables)
            return phi[None, :], np.array([margin])
        if len(X) >= PARALLEL_FROM:  # a bulk job (re-explaining history, a batch): every core
            return _kernel_par(X, *self._tables, BLOCK)
        return _kernel(X, *self._tables, BLOCK)

