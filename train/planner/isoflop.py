"""Approach 2 of Hoffmann et al. 2022 (Section 3.2), IsoFLOP profiles: for each budget C, a parabola in log N
through the final losses of models trained with exactly C FLOPs; its minimum is N_opt(C), and D_opt(C) is read off
the budget's own (log N, log D) line there (C / 6 N_opt when C = 6ND). Then N_opt = k_N C^a, D_opt = k_D C^b by
least squares in log space. The paper: a = 0.49, b = 0.51 (Table 2).

A budget is left out, with the reason, when its grid does not bracket the minimum: its lowest measured loss is at
its smallest or largest model, the parabola opens downwards, or its vertex lies outside the grid. (The parabola
is a Taylor approximation: on a grid centred at a constant offset from the true optimum, as a law's own optimum
is, the offset it causes is the same at every budget and the exponents come out exact; tests/train/planner.)

Every function takes a matrix of run weights W (R, n) - all ones, or bootstrap counts - and fits all R rows at
once. Shapes: R weight rows, n runs, G budgets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from train.errors import CgptError
from train.planner.runsfile import Runs


def _solve(A: np.ndarray, rhs: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Batched weighted least squares A c = rhs (R, k, k), (R, k); rows that are not `ok` get nan."""
    A = np.where(ok[:, None, None], A, np.eye(A.shape[-1]))
    c = np.linalg.solve(A, rhs[..., None])[..., 0]
    return np.where(ok[:, None], c, np.nan)


def _line(x: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slope, intercept) of Y (R, G) on x (G,) by least squares over each row's masked points; nan below two."""
    m = mask.astype(float)
    count = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (m * x).sum(1) / count
        my = np.nansum(m * np.nan_to_num(Y), 1) / count
        dx = x - mx[:, None]
        slope = (m * dx * (np.nan_to_num(Y) - my[:, None])).sum(1) / (m * dx**2).sum(1)
    slope = np.where(count >= 2, slope, np.nan)
    return slope, my - slope * mx


def _budget_fit(x: np.ndarray, xd: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """One budget's parabola y = c0 + c1 u + c2 u^2 in u = log N - centre, for every row of weights w (R, n)."""
    centre = x.mean()
    u = x - centre
    sizes, which = np.unique(x, return_inverse=True)
    present = w > 0
    n_sizes = (present @ np.eye(len(sizes))[which] > 0).sum(1)
    X = np.stack([np.ones_like(u), u, u * u], 1)  # (n, 3)
    c = _solve(np.einsum("ri,ij,ik->rjk", w, X, X), np.einsum("ri,ij,i->rj", w, X, y), n_sizes >= 3)
    vertex = -c[:, 1] / (2 * c[:, 2]) + centre  # log N_opt
    lowest = x[np.argmin(np.where(present, y, np.inf), 1)]  # the size with the lowest measured loss
    lo, hi = np.where(present, x, np.inf).min(1), np.where(present, x, -np.inf).max(1)
    L = X[:, :2]  # log D on log N, to read D at the vertex
    cd = _solve(np.einsum("ri,ij,ik->rjk", w, L, L), np.einsum("ri,ij,i->rj", w, L, xd), n_sizes >= 2)
    with np.errstate(invalid="ignore"):
        checks = {  # why a budget is left out, in the order they are reported
            "fewer than 3 sizes": n_sizes < 3,
            "lowest loss at its smallest model": lowest == lo,
            "lowest loss at its largest model": lowest == hi,
            "parabola opens downwards": ~(c[:, 2] > 0),
            "minimum outside the grid": ~((vertex > lo) & (vertex < hi)),
        }
    ok = ~np.any(list(checks.values()), axis=0)
    reason = next((name for name, bad in checks.items() if bad[0]), None)
    return {
        "coef": c,
        "centre": centre,
        "log_n": vertex,
        "log_d": cd[:, 0] + cd[:, 1] * (vertex - centre),
        "ok": ok,
        "reason": reason,
        "sizes": len(sizes),
    }


def fit_isoflop(runs: Runs, W: np.ndarray) -> dict[str, Any]:
    """IsoFLOP fits for each row of weights W (R, n): exponents a, b and log k_N, log k_D (R,), budgets (R, G)."""
    budgets = np.unique(runs.budget)
    x, xd, y = np.log(runs.params), np.log(runs.tokens), runs.loss
    fits = []
    for c in budgets:
        m = np.flatnonzero(runs.budget == c)
        if len(np.unique(x[m])) < 3:
            raise CgptError(
                f"{runs.where[m[0]]}: the budget C = {c:.3g} has {len(np.unique(x[m]))} model size(s); Approach 2 "
                "fits a parabola per budget and needs at least 3 (finish the sweep, or fit with --approach 3)"
            )
        fits.append(_budget_fit(x[m], xd[m], y[m], W[:, m]))
    ok = np.stack([f["ok"] for f in fits], 1)  # (R, G)
    log_n, log_d = np.stack([f["log_n"] for f in fits], 1), np.stack([f["log_d"] for f in fits], 1)
    a, log_kn = _line(np.log(budgets), log_n, ok)
    b, log_kd = _line(np.log(budgets), log_d, ok)
    return {"a": a, "b": b, "log_kn": log_kn, "log_kd": log_kd, "budgets": budgets, "fits": fits, "ok": ok}
