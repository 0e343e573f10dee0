"""L-BFGS for many small problems at once, in numpy (Nocedal 1980; Liu & Nocedal 1989).

Approach 3 of Hoffmann et al. 2022 fits five numbers by L-BFGS from a grid of starting points, and its bootstrap
refits them on a thousand resamples: thousands of independent 5-parameter problems. `minimize` runs them as one
batch - every array carries a leading problem axis - so the Python loop turns once per iteration, not once per
problem. Each problem keeps its own history (the last `memory` steps s and gradient changes y), its own backtracking
line search (Armijo) and its own stopping test. scipy is not a dependency of this project, and torch.optim.LBFGS
solves one problem at a time.

Shapes: K problems, P parameters; `fun(x, idx)` evaluates the problems `idx` (k,) at x (k, P).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # (x, idx) -> f (k,), grad (k, P)
ARMIJO = 1e-4  # sufficient decrease: f(x + t d) <= f(x) + ARMIJO t g.d
MAX_HALVINGS = 40


def _direction(g: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """-H g by the two-loop recursion; S, Y (m, k, P) and rho (m, k) are ordered newest first. An empty slot
    (rho = 0: no step yet, or a step without positive curvature) leaves the recursion unchanged."""
    q, alphas = g.copy(), []
    for s, y, r in zip(S, Y, rho, strict=True):
        a = r * np.einsum("kp,kp->k", s, q)
        q -= a[:, None] * y
        alphas.append(a)
    q *= gamma[:, None]  # the initial inverse Hessian: gamma I, gamma = s.y / y.y of the newest step
    for s, y, r, a in zip(S[::-1], Y[::-1], rho[::-1], alphas[::-1], strict=True):
        b = r * np.einsum("kp,kp->k", y, q)
        q += (a - b)[:, None] * s
    return -q


def minimize(
    fun: Objective,
    x0: np.ndarray,
    max_iter: int = 500,
    memory: int = 10,
    gtol: float = 1e-12,
    ftol: float = 1e-14,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, f): K problems minimised from x0 (K, P). A problem stops when its largest gradient component is below
    `gtol`, when an iteration lowers f by less than `ftol` relative, or when its line search cannot descend."""
    x = np.array(x0, dtype=np.float64)
    K, P = x.shape
    f, g = fun(x, np.arange(K))
    S, Y, rho = np.zeros((memory, K, P)), np.zeros((memory, K, P)), np.zeros((memory, K))
    gamma = 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-300)  # the first step has length 1
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        order = [(it - 1 - j) % memory for j in range(memory)]  # slots, newest first
        d = _direction(g[idx], S[order][:, idx], Y[order][:, idx], rho[order][:, idx], gamma[idx])
        gd = np.einsum("kp,kp->k", g[idx], d)
        bad = ~(gd < 0)  # not a descent direction: restart from steepest descent
        if bad.any():
            d[bad] = -g[idx][bad] / np.maximum(np.linalg.norm(g[idx][bad], axis=1), 1e-300)[:, None]
            gd[bad] = np.einsum("kp,kp->k", g[idx][bad], d[bad])
            rho[:, idx[bad]] = 0.0
        x_new, f_new, g_new, moved = _line_search(fun, x[idx], f[idx], g[idx], d, gd, idx)
        s, y = x_new - x[idx], g_new - g[idx]
        with np.errstate(all="ignore"):  # steps so small that 1 / s.y overflows are dropped, not stored
            sy, yy = np.einsum("kp,kp->k", s, y), np.einsum("kp,kp->k", y, y)
            r, scale = 1.0 / sy, sy / yy
            curved = moved & (sy > 1e-12 * np.sqrt(np.einsum("kp,kp->k", s, s) * yy)) & np.isfinite(r * scale)
        slot = it % memory
        S[slot, idx], Y[slot, idx] = s, y
        rho[slot, idx] = np.where(curved, r, 0.0)
        gamma[idx] = np.where(curved & (scale > 0), scale, gamma[idx])
        small = np.abs(f[idx] - f_new) <= ftol * np.maximum(np.abs(f[idx]), 1e-300)
        x[idx], f[idx], g[idx] = x_new, f_new, g_new
        active[idx] = moved & ~small & (np.abs(g_new).max(axis=1) > gtol)
    return x, f


def _line_search(
    fun: Objective, x: np.ndarray, f: np.ndarray, g: np.ndarray, d: np.ndarray, gd: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backtracking from t = 1, halving until f falls enough; (x, f, grad, moved) - unmoved where it never did."""
    x_new, f_new, g_new = x.copy(), f.copy(), g.copy()
    moved = np.zeros(len(x), dtype=bool)
    t, todo = np.ones(len(x)), np.arange(len(x))
    for _ in range(MAX_HALVINGS):
        xt = x[todo] + t[todo, None] * d[todo]
        ft, gt = fun(xt, idx[todo])
        ok = np.isfinite(ft) & (ft <= f[todo] + ARMIJO * t[todo] * gd[todo])
        done = todo[ok]
        x_new[done], f_new[done], g_new[done], moved[done] = xt[ok], ft[ok], gt[ok], True
        todo = todo[~ok]
        if todo.size == 0:
            break
        t[todo] *= 0.5
    return x_new, f_new, g_new, moved
