"""What `cgpt fit` shows and writes: the fit as a table beside the paper's and the replication's figures,
summary.json, and the plots (`fit_files` does it all: what the command and the end of a sweep call).

Plots (PNG; matplotlib is optional - without it `plot_fit` writes nothing and says so):
  isoflop.png    loss against N for each budget, its parabola and minimum (Hoffmann et al. 2022, Fig. 3 left)
  scaling.png    N_opt and D_opt against C: the fitted lines beside the paper's Approach 2 line (a = 0.49, anchored
                 at its Table A3: 400M parameters, 7.7B tokens at 1.84e19 FLOPs) and the replication's frontier
  contours.png   the Approach 3 loss L(N, D) over (C = 6ND, N), its efficient frontier, and the runs (Fig. 4 left)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from train.planner import scaling
from train.planner.fit import fit_runs
from train.planner.runsfile import Runs, read_runs
from train.runtime.files import atomic_write_text

PAPER, REPLICATION = scaling.CONSTANTS["unrounded"], scaling.CONSTANTS["besiroglu"]
PAPER_A2 = (1.84e19, 400e6, 7.7e9)  # Table A3, Approach 2 column: C, N_opt, D_opt


def _ci(ci: list[float] | None, fmt: str) -> str:
    return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "(no interval)"


def _approach2_lines(a2: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    lines = ["Approach 2 (IsoFLOP profiles: a parabola in log N per budget)"]
    lines.append(f"  {'budget C':<10} {'runs':>4}  {'N_opt':>8}  {'D_opt':>8}  {'loss there':>10}")
    for b in a2["budgets"]:
        if b["excluded"]:
            lines.append(f"  {b['flops']:<10.3g} {b['runs']:>4}  left out: {b['excluded']}")
        else:
            n, d = scaling.si(b["n_opt"]), scaling.si(b["d_opt"])
            lines.append(f"  {b['flops']:<10.3g} {b['runs']:>4}  {n:>8}  {d:>8}  {b['loss_opt']:>10.4f}")
    if "error" in a2:
        return [*lines, f"  {a2['error']}"]
    paper, repl = ref["paper_approach2"], ref["replication"]
    for key, what in (("a", "N_opt ~ C^a"), ("b", "D_opt ~ C^b")):
        est = f"{key} = {a2[key]:.3f} {_ci(a2[key + '_ci'], '.3f')}"
        lines.append(f"  {what}   {est:<28} paper {paper[key]:.2f}, replication {repl[key]:.3f}")
    return lines


def _approach3_lines(a3: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    lines = [
        f"Approach 3 (L = E + A/N^alpha + B/D^beta: Huber {a3['huber_delta']:g} on log L, L-BFGS, {a3['starts']} "
        "starts)"
    ]
    for key in ("E", "A", "B", "alpha", "beta"):
        fmt = ".4g" if key in ("A", "B") else ".4f"
        est = f"{a3[key]:{fmt}} {_ci(a3[key + '_ci'], fmt)}"
        lines.append(
            f"  {key:<6} {est:<34} paper {getattr(PAPER, key):.4g}, replication {getattr(REPLICATION, key):.4g}"
        )
    est = f"{a3['a']:.3f} {_ci(a3['a_ci'], '.3f')}"
    paper, repl = ref["paper_approach3"]["a"], ref["replication"]["a"]
    lines.append(f"  a = beta / (alpha + beta)  {est:<20} paper {paper:.2f}, replication {repl:.3f}")
    lines.append("  (E, A, B are nats on each fit's own data and tokenizer: only the exponents compare across data)")
    return lines


def format_fit(summary: dict[str, Any]) -> str:
    s = summary
    head = (
        f"{s['n_runs']} runs in {s['n_budgets']} budgets (N: {s['params']} parameters); "
        f"{s['bootstrap']} bootstrap resamples (seed {s['seed']}), {s['level']:.0%} intervals"
    )
    lines = [head]
    if s["approach2"] is not None:
        lines += ["", *_approach2_lines(s["approach2"], s["reference"])]
    if s["approach3"] is not None:
        lines += ["", *_approach3_lines(s["approach3"], s["reference"])]
    return "\n".join(lines)


def fit_files(
    paths: list[str | Path],
    out_dir: str | Path | None = None,
    approach: str = "both",
    bootstrap: int = 1000,
    params: str = "total",
    seed: int = 0,
) -> dict[str, Any]:
    """Read the runs files, fit, and (with `out_dir`) write summary.json and the plots there; the summary."""
    runs = read_runs(list(paths), params)
    summary = {**fit_runs(runs, approach, bootstrap, seed), "runs_files": [str(p) for p in paths]}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        summary["plots"] = [str(p) for p in plot_fit(summary, runs, out)]
    return summary


# --- plots ---------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_fit(summary: dict[str, Any], runs: Runs, out_dir: str | Path) -> list[Path]:
    """Write the plots that apply to `out_dir`; [] when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return []
    out, written = Path(out_dir), []
    a2, a3 = summary["approach2"], summary["approach3"]
    if a2 is not None:
        written.append(_plot_isoflop(plt, a2, runs, out / "isoflop.png"))
        if "error" not in a2:
            written.append(_plot_scaling(plt, a2, a3, runs, out / "scaling.png"))
    if a3 is not None:
        written.append(_plot_contours(plt, a3, runs, out / "contours.png"))
    return written


def _frontier(flops: np.ndarray, law: scaling.LossConstants, i: int) -> np.ndarray:
    """N_opt (i = 0) or D_opt (i = 1) of the law's frontier at each budget."""
    return np.array([scaling.compute_optimal(float(c), law)[i] for c in flops])


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_isoflop(plt: Any, a2: dict[str, Any], runs: Runs, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(a2["budgets"])))
    for b, colour in zip(a2["budgets"], colours, strict=True):
        m = runs.budget == b["flops"]
        ax.plot(runs.params[m], runs.loss[m], "o", color=colour, label=f"C = {b['flops']:.3g}")
        u = np.linspace(np.log(runs.params[m].min()), np.log(runs.params[m].max()), 100) - b["log_n_centre"]
        c0, c1, c2 = b["parabola"]
        style = ":" if b["excluded"] else "-"
        ax.plot(np.exp(u + b["log_n_centre"]), c0 + c1 * u + c2 * u * u, style, color=colour)
        if b["n_opt"]:
            ax.plot(b["n_opt"], b["loss_opt"], "*", color=colour, markersize=14, markeredgecolor="k")
    ax.set(xscale="log", xlabel="parameters N", ylabel="final validation loss (nats/token)")
    ax.set_title("IsoFLOP profiles (dotted: left out)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _plot_scaling(plt: Any, a2: dict[str, Any], a3: dict[str, Any] | None, runs: Runs, path: Path) -> Path:
    used = [b for b in a2["budgets"] if not b["excluded"]]
    c = np.geomspace(runs.flops.min() / 3, runs.flops.max() * 3, 50)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, coef, label in ((axes[0], "n", a2["k_n"], "N_opt"), (axes[1], "d", a2["k_d"], "D_opt")):
        exp, i = (a2["a"], 0) if key == "n" else (a2["b"], 1)
        ax.plot([b["flops"] for b in used], [b[f"{key}_opt"] for b in used], "ko", label="IsoFLOP minima")
        ax.plot(c, coef * c**exp, "k-", label=f"fit: {label} ~ C^{exp:.3f}")
        paper_exp = 0.49 if key == "n" else 0.51
        ax.plot(c, PAPER_A2[1 + i] * (c / PAPER_A2[0]) ** paper_exp, "--", label=f"paper Approach 2 (C^{paper_exp})")
        ax.plot(c, _frontier(c, REPLICATION, i), ":", label="replication (Besiroglu et al. 2024)")
        if a3 is not None and a3["alpha"] and a3["beta"] and a3["alpha"] > 0 and a3["beta"] > 0:
            law = scaling.LossConstants(*(a3[name] for name in ("E", "A", "B", "alpha", "beta")))
            ax.plot(c, _frontier(c, law, i), "-.", label="Approach 3 fit (C = 6ND)")
        ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _plot_contours(plt: Any, a3: dict[str, Any], runs: Runs, path: Path) -> Path:
    law = [a3[k] for k in ("E", "A", "B", "alpha", "beta")]
    E, A, B, alpha, beta = law
    c6 = 6 * runs.params * runs.tokens
    C, N = np.meshgrid(
        np.geomspace(c6.min() / 4, c6.max() * 4, 200), np.geomspace(runs.params.min() / 4, runs.params.max() * 4, 200)
    )
    L = E + A / N**alpha + B / (C / (6 * N)) ** beta
    fig, ax = plt.subplots(figsize=(7, 5))
    levels = np.quantile(L, np.linspace(0.02, 0.9, 14))
    filled = ax.contourf(C, N, L, levels=levels, cmap="viridis_r", extend="both")
    fig.colorbar(filled, ax=ax, label="L(N, D), nats/token")
    ax.contour(C, N, L, levels=levels, colors="k", linewidths=0.3)
    if alpha > 0 and beta > 0:
        cs = np.geomspace(C.min(), C.max(), 50)
        ax.plot(cs, _frontier(cs, scaling.LossConstants(*law), 0), "b-", lw=2, label="efficient frontier")
    ax.scatter(
        c6, runs.params, c=runs.loss, cmap="viridis_r", edgecolors="w", vmin=levels[0], vmax=levels[-1], label="runs"
    )
    ax.set(xscale="log", yscale="log", xlabel="C = 6ND", ylabel="parameters N", ylim=(N.min(), N.max()))
    ax.set_title("Approach 3: L(N, D) contours and the efficient frontier")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
