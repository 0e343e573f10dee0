"""Approach 3 of Hoffmann et al. 2022 (Section 3.3, App. D.2), a parametric loss

    L(N, D) = E + A / N^alpha + B / D^beta,

fitted as the paper and the replication (Besiroglu et al. 2024, arXiv 2404.10102) do: on log L, in the
log-sum-exp form log L = LSE(log A - alpha log N, log B - beta log D, log E), minimising the summed Huber loss
(delta = 1e-3) of the residuals with L-BFGS (train/planner/lbfgs.py) from the paper's grid of 4500 starting points,
keeping the best. Every start gets SCOUT iterations and the KEEP best are run to convergence (on synthetic data the
best of all 4500 run to the end is always among them). Its frontier under C = 6ND: N_opt ~ C^a, D_opt ~ C^b with
a = beta / (alpha + beta), b = alpha / (alpha + beta). The paper: a = 0.46; the replication: a = 0.513.

A bootstrap refit (a row of the weight matrix W) starts from its own BOOT_STARTS best grid points and from the full
fit's optimum. Shapes: R weight rows, n runs, S starts per row, k problems in an L-BFGS batch.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from train.planner import lbfgs
from train.planner.runsfile import Runs

HUBER_DELTA = 1e-3  # Hoffmann et al. 2022, App. D.2
# the paper's starting points for (log A, log B, log E, alpha, beta): 6 x 6 x 5 x 5 x 5 = 4500
GRID_AXES = (
    (0, 5, 10, 15, 20, 25),
    (0, 5, 10, 15, 20, 25),
    (-1, -0.5, 0, 0.5, 1),
    (0, 0.5, 1, 1.5, 2),
    (0, 0.5, 1, 1.5, 2),
)
SCOUT, KEEP = 40, 100  # every grid point gets SCOUT L-BFGS iterations, the KEEP best are run to convergence
BOOT_STARTS = 4  # a resample's refit starts from its best grid points and from the full fit's optimum
CHUNK = 2_000_000  # problems x runs per L-BFGS batch: bounds memory for large runs files


def grid() -> np.ndarray:
    """(4500, 5) starting points (log A, log B, log E, alpha, beta)."""
    return np.array(list(itertools.product(*GRID_AXES)), dtype=np.float64)


def log_loss(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """log L (k, n) for parameters theta (k, 5), and the shares (k, n) of its three terms in L."""
    t = (
        theta[:, 0, None] - theta[:, 3, None] * log_n,  # log(A / N^alpha)
        theta[:, 1, None] - theta[:, 4, None] * log_d,  # log(B / D^beta)
        np.broadcast_to(theta[:, 2, None], (len(theta), len(log_n))),  # log E
    )
    top = np.maximum(np.maximum(t[0], t[1]), t[2])
    e = tuple(np.exp(ti - top) for ti in t)
    total = e[0] + e[1] + e[2]
    return top + np.log(total), tuple(ei / total for ei in e)


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    return np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))


def _objective(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, W: np.ndarray, rows: np.ndarray) -> Any:
    """fun(theta, idx) for lbfgs.minimize: problem i fits the runs weighted by W[rows[i]]."""

    def fun(theta: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):  # a wild trial step: inf or nan, which L-BFGS rejects
            pred, (p_a, p_b, p_e) = log_loss(theta, log_n, log_d)
            r = pred - log_l  # (k, n)
            w = W[rows[idx]]
            dr = w * np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # d huber / d r, weighted
            da, db = dr * p_a, dr * p_b
            grad = np.stack([da.sum(1), db.sum(1), (dr * p_e).sum(1), -(da @ log_n), -(db @ log_d)], 1)
            return (w * huber(r)).sum(1), grad

    return fun


def _fit3(runs: Runs, W: np.ndarray, starts: np.ndarray, max_iter: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """L-BFGS from starts (R, S, 5) for each row of W (R, n): every end point (R, S, 5) and its objective (R, S)."""
    R, S, _ = starts.shape
    log_n, log_d, log_l = np.log(runs.params), np.log(runs.tokens), np.log(runs.loss)
    # L-BFGS works on log A - alpha mean(log N) and log B - beta mean(log D) (the same objective): log A and
    # alpha are otherwise nearly collinear over the runs, a narrow valley that costs many more iterations
    mn, md = log_n.mean(), log_d.mean()
    flat, rows = starts.reshape(R * S, 5).copy(), np.repeat(np.arange(R), S)
    flat[:, 0] -= flat[:, 3] * mn
    flat[:, 1] -= flat[:, 4] * md
    theta, f = np.empty_like(flat), np.empty(R * S)
    step = max(S, CHUNK // len(runs) // S * S)  # whole resamples per chunk
    for lo in range(0, R * S, step):
        part = slice(lo, lo + step)
        fun = _objective(log_n - mn, log_d - md, log_l, W, rows[part])
        theta[part], f[part] = lbfgs.minimize(fun, flat[part], max_iter=max_iter)
    theta[:, 0] += theta[:, 3] * mn
    theta[:, 1] += theta[:, 4] * md
    return theta.reshape(R, S, 5), np.where(np.isfinite(f), f, np.inf).reshape(R, S)


def _best(theta: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i = f.argmin(1)
    return theta[np.arange(len(f)), i], f[np.arange(len(f)), i]


def fit_parametric(runs: Runs, W: np.ndarray, starts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The full fit (W's first row, all ones) from the whole grid - every start for SCOUT iterations, then the
    KEEP best to convergence - and each other row from its BOOT_STARTS best grid points and the full fit's optimum.
    (R, 5) parameters become the reported E, A, B, alpha, beta and a, b."""
    starts = grid() if starts is None else starts
    scouted, f = _fit3(runs, W[:1], starts[None], max_iter=SCOUT)
    keep = np.argsort(f[0])[:KEEP]
    theta, f = _best(*_fit3(runs, W[:1], scouted[:, keep]))
    if len(W) > 1:
        pred, _ = log_loss(starts, np.log(runs.params), np.log(runs.tokens))
        scores = huber(pred - np.log(runs.loss)) @ W[1:].T  # (4500, R - 1): each resample's grid objective
        top = np.argsort(scores, axis=0)[:BOOT_STARTS].T  # (R - 1, BOOT_STARTS)
        boot = np.concatenate([starts[top], np.broadcast_to(theta, (len(W) - 1, 1, 5))], 1)
        tb, fb = _best(*_fit3(runs, W[1:], boot))
        theta, f = np.concatenate([theta, tb]), np.concatenate([f, fb])
    alpha, beta = theta[:, 3], theta[:, 4]
    with np.errstate(all="ignore"):  # a degenerate resample may run off to infinity: inf, reported as such
        a, b = beta / (alpha + beta), alpha / (alpha + beta)
        E, A, B = np.exp(theta[:, 2]), np.exp(theta[:, 0]), np.exp(theta[:, 1])
    return {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": a, "b": b, "objective": f}
