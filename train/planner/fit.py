"""The Chinchilla scaling law measured on your own runs (`cgpt fit`): Hoffmann et al. 2022 (DeepMind, arXiv
2203.15556), Approaches 2 and 3, with bootstrap intervals. Plain numpy: no torch, no GPU, seconds on a CPU.

The paper estimated how the compute-optimal N and D grow with the budget C three ways: (1) the lowest loss reached
at each FLOP count along the training curves of many model sizes; (2) IsoFLOP profiles, several sizes trained with
exactly the same C each, a parabola through each budget's final losses (train/planner/isoflop.py); (3) a parametric
loss L(N, D) = E + A / N^alpha + B / D^beta fitted to every run (train/planner/parametric.py). A sweep's final
losses (train/planner/sweep.py) serve the last two; the first needs each size's training curve cut at many FLOP
counts, each with its own matched cosine schedule.

Intervals: a percentile bootstrap over the runs - each budget's runs drawn again with replacement, since the
sweep's design fixed which sizes each budget has - seeded, for every reported quantity. Both fits run on all
resamples at once (vectorised), so a thousand resamples take seconds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from train.errors import CgptError
from train.planner.isoflop import fit_isoflop
from train.planner.parametric import HUBER_DELTA, fit_parametric, grid
from train.planner.runsfile import Runs
from train.planner.scaling import CONSTANTS

APPROACHES = ("2", "3", "both")
LEVEL = 0.95
_besiroglu = CONSTANTS["besiroglu"]
REFERENCE = {  # N_opt ~ C^a, D_opt ~ C^b
    "paper_approach2": {"a": 0.49, "b": 0.51},  # Hoffmann et al. 2022, Table 2
    "paper_approach3": {"a": 0.46, "b": 0.54},
    "replication": {  # Besiroglu et al. 2024's Approach 3 constants
        "a": _besiroglu.beta / (_besiroglu.alpha + _besiroglu.beta),
        "b": _besiroglu.alpha / (_besiroglu.alpha + _besiroglu.beta),
    },
}


def resample_weights(runs: Runs, n: int, seed: int) -> np.ndarray:
    """(1 + n, runs) weights: all ones (the data itself), then n resamples - each budget's runs drawn with
    replacement (counts of each run)."""
    rng = np.random.default_rng(seed)
    W = np.ones((1 + n, len(runs)))
    for c in np.unique(runs.budget):
        m = np.flatnonzero(runs.budget == c)
        W[1:, m] = rng.multinomial(len(m), np.full(len(m), 1 / len(m)), size=n)
    return W


def interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of the finite bootstrap samples; None with fewer than 10."""
    good = samples[np.isfinite(samples)]
    if len(good) < 10:
        return None
    lo, hi = np.quantile(good, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def _estimates(values: dict[str, np.ndarray], keys: tuple[str, ...], level: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        v = float(values[k][0])
        out[k] = v if math.isfinite(v) else None
        out[f"{k}_ci"] = interval(values[k][1:], level) if out[k] is not None else None
    return out


def _summary2(runs: Runs, res: dict[str, Any], level: float, strict: bool) -> dict[str, Any]:
    budgets = []
    for g, (c, f) in enumerate(zip(res["budgets"], res["fits"], strict=True)):
        ok = bool(res["ok"][0, g])
        c0, c1, c2 = (float(v) for v in f["coef"][0])
        budgets.append(
            {
                "flops": float(c),
                "runs": int((runs.budget == c).sum()),
                "sizes": f["sizes"],
                "n_opt": float(np.exp(f["log_n"][0])) if ok else None,
                "d_opt": float(np.exp(f["log_d"][0])) if ok else None,
                "loss_opt": c0 - c1 * c1 / (4 * c2) if ok else None,
                "excluded": f["reason"],
                "parabola": [c0, c1, c2],  # loss = c0 + c1 u + c2 u^2, u = ln N - log_n_centre
                "log_n_centre": float(f["centre"]),
            }
        )
    used = int(res["ok"][0].sum())
    if used < 2:
        left_out = "; ".join(f"C = {b['flops']:.3g}: {b['excluded']}" for b in budgets if b["excluded"])
        msg = f"Approach 2: {used} of {len(budgets)} budgets bracket their minimum, it needs 2 ({left_out})"
        if strict:
            raise CgptError(msg)
        return {"error": msg, "budgets": budgets}
    return {
        **_estimates({"a": res["a"], "b": res["b"]}, ("a", "b"), level),
        "k_n": float(np.exp(res["log_kn"][0])),  # N_opt = k_n C^a
        "k_d": float(np.exp(res["log_kd"][0])),  # D_opt = k_d C^b
        "n_budgets_used": used,
        "bootstrap_used": int(np.isfinite(res["a"][1:]).sum()),
        "budgets": budgets,
    }


def _summary3(runs: Runs, res: dict[str, np.ndarray], level: float) -> dict[str, Any]:
    return {
        **_estimates(res, ("E", "A", "B", "alpha", "beta", "a", "b"), level),
        "objective": float(res["objective"][0]),  # the summed Huber loss at the optimum
        "huber_delta": HUBER_DELTA,
        "starts": len(grid()),
    }


def fit_runs(
    runs: Runs, approach: str = "both", bootstrap: int = 1000, seed: int = 0, level: float = LEVEL
) -> dict[str, Any]:
    """The fit summary (summary.json, `cgpt fit --json`): the top-level a, b are Approach 2's where it could be
    fitted, else those Approach 3 implies (`ab_from` says which); E, A, B, alpha, beta are Approach 3's."""
    if approach not in APPROACHES:
        raise CgptError(f"approach={approach!r} is not known: expected one of {list(APPROACHES)}")
    if not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise CgptError(f"bootstrap={bootstrap!r}: expected an integer >= 0")
    W = resample_weights(runs, bootstrap, seed)
    a2 = _summary2(runs, fit_isoflop(runs, W), level, approach == "2") if approach != "3" else None
    a3 = None
    if approach != "2":
        distinct = len({(n, d) for n, d in zip(runs.params, runs.tokens, strict=True)})
        if distinct < 6:
            raise CgptError(f"{runs.where[0]}: {distinct} distinct (N, D) runs; Approach 3 fits 5 numbers, give 6+")
        a3 = _summary3(runs, fit_parametric(runs, W), level)
    ab = a2 if a2 is not None and "a" in a2 else a3
    law = a3 or {}
    return {
        "a": ab["a"],
        "b": ab["b"],
        "a_ci": ab["a_ci"],
        "b_ci": ab["b_ci"],
        **{k: law.get(k) for k in ("E", "A", "B", "alpha", "beta", "E_ci", "A_ci", "B_ci", "alpha_ci", "beta_ci")},
        "n_runs": len(runs),
        "n_budgets": len(np.unique(runs.budget)),
        "approach2": a2,
        "approach3": a3,
        "ab_from": "approach2" if ab is a2 else "approach3",
        "params": runs.params_kind,
        "bootstrap": bootstrap,
        "seed": seed,
        "level": level,
        "fit_range": {
            k: [float(v.min()), float(v.max())]
            for k, v in (("params", runs.params), ("tokens", runs.tokens), ("flops", runs.flops))
        },
        "reference": REFERENCE,
    }
