"""Muon: MomentUm Orthogonalized by Newton-Schulz (Keller Jordan et al. 2024), as in modded-nanogpt's speedruns.

For a weight matrix W (rows, cols) with gradient G, Muon keeps SGD momentum and replaces each update by the
nearest semi-orthogonal matrix, approximately U V^T of the update's SVD U S V^T, computed by a few Newton-Schulz
iterations instead of an SVD:

    buf = momentum * buf + G                              (SGD momentum)
    M   = G + momentum * buf   (Nesterov)   or   buf
    O   = newton_schulz(M)                                (singular values pushed to ~[0.7, 1.2])
    W  *= 1 - lr * weight_decay                           (decoupled, as AdamW)
    W  -= lr * max(1, rows / cols) ** 0.5 * O

Every direction of the update then moves by about the same amount, however ill-conditioned the gradient. The
shape factor is modded-nanogpt's: a tall matrix's U V^T has a smaller RMS entry (sqrt(1/rows) instead of
sqrt(1/cols)), and the factor brings it back, so one learning rate suits every block matrix.

Muon is for the 2-D matrices inside the blocks only. Embeddings, the output head and the 1-D gains and biases go
to AdamW (`split_for_muon`), and `MuonWithAdamW` holds both in one torch.optim.Optimizer for the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

# Coefficients of the quintic p(x) = a x + b x^3 + c x^5 that one Newton-Schulz step applies to every singular
# value: tuned for a steep slope at 0 (a = 3.4445) rather than convergence to exactly 1 (p(1) = 0.701).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

# Parameter-name components that mark embeddings and output heads (AdamW, never Muon): this GPT's `wte`, `wpe`
# and untied `lm_head`, and a fine-tuning TaskModel's `head` (model/heads.py); "embed" anywhere in a component.
NOT_MUON = ("wte", "wpe", "lm_head", "head")


# --- the orthogonalisation --------------------------------------------------------------------------------


def newton_schulz(G: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximately U V^T for G = U S V^T (rows, cols), by `steps` quintic Newton-Schulz iterations.

    X = G / ||G||_F puts every singular value in (0, 1]. Each step X <- a X + b (X X^T) X + c (X X^T)^2 X maps
    every singular value s to p(s) and keeps U and V. p rises steeply from 0 (slope a) and its largest value on
    [0, 1.2] is 1.2024; [0.68, 1.2024] maps into itself, so after 5 steps every singular value of at least
    0.002 ||G||_F lies in about [0.68, 1.2]. Not exactly 1, and intended: Jordan et al. found the spread costs
    nothing in training, while a steep polynomial needs few steps. Computed in float32 (exact enough, and fast on
    every device; CPUs lack fast bf16), returned in G's dtype.
    """
    if G.dim() != 2:
        raise ValueError(f"newton_schulz takes a matrix; got shape {tuple(G.shape)}")
    a, b, c = NS_COEFFICIENTS
    X = G.float()
    X = X / (X.norm() + eps)
    tall = X.size(0) > X.size(1)
    if tall:  # iterate on the wide side: X X^T is then (min, min), the smaller Gram matrix
        X = X.T
    for _ in range(steps):
        A = X @ X.T  # (r, r), r = min(rows, cols)
        B = b * A + c * A @ A
        X = a * X + B @ X
    return (X.T if tall else X).to(G.dtype)


@torch.no_grad()
def muon_update_(
    p: Tensor, grad: Tensor, buf: Tensor, lr: float, momentum: float, nesterov: bool, ns_steps: int, wd: float
) -> None:
    """One Muon step on matrix `p` in place, advancing its momentum buffer `buf` in place."""
    buf.mul_(momentum).add_(grad)
    update = grad.add(buf, alpha=momentum) if nesterov else buf
    orth = newton_schulz(update, ns_steps)  # (rows, cols), singular values ~[0.7, 1.2]
    scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
    p.mul_(1 - lr * wd)
    p.add_(orth, alpha=-lr * scale)


@torch.no_grad()
def adamw_update_(
    p: Tensor, grad: Tensor, state: dict[str, Any], lr: float, betas: tuple[float, float], eps: float, wd: float
) -> None:
    """One AdamW step (Loshchilov & Hutter 2019) in place, in torch.optim.AdamW's order of operations."""
    if not state:
        state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    state["step"] += 1
    beta1, beta2 = betas
    p.mul_(1 - lr * wd)
    state["exp_avg"].lerp_(grad, 1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1 ** state["step"])
    denom = (state["exp_avg_sq"].sqrt() / (1 - beta2 ** state["step"]) ** 0.5).add_(eps)
    p.addcdiv_(state["exp_avg"], denom, value=-step_size)


def _closure_loss(closure: Callable[[], float] | None) -> float | None:
    """torch.optim's closure convention: re-evaluate the loss (with gradients) before the step, if given."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _check_matrices(group: dict[str, Any]) -> None:
    for p in group["params"]:
        if p.dim() != 2:
            raise ValueError(
                f"Muon updates 2-D matrices only; got a parameter of shape {tuple(p.shape)} "
                "(give embeddings, heads, gains and biases to AdamW: see split_for_muon)"
            )


def _step_muon_group(state: dict[Tensor, Any], group: dict[str, Any]) -> None:
    for p in group["params"]:
        if p.grad is None:
            continue
        if "momentum_buffer" not in state[p]:
            state[p]["momentum_buffer"] = torch.zeros_like(p)
        muon_update_(
            p,
            p.grad,
            state[p]["momentum_buffer"],
            group["lr"],
            group["momentum"],
            group["nesterov"],
            group["ns_steps"],
            group["weight_decay"],
        )


# --- Muon alone -------------------------------------------------------------------------------------------


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices; groups may override lr / weight_decay and carry extra keys (lr_scale)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _check_matrices(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            _step_muon_group(self.state, group)
        return loss


# --- which parameters Muon takes --------------------------------------------------------------------------


def _muon_name(name: str) -> bool:
    return not any(part in NOT_MUON or "embed" in part for part in name.split("."))


def split_for_muon(named_params: Iterable[tuple[str, nn.Parameter]]) -> tuple[list[Tensor], list[Tensor]]:
    """(muon, adamw): the 2-D block matrices for Muon; embeddings, heads, gains and biases for AdamW.

    The rule reads dotted names component by component (so `transformer.h.0.attn.c_attn.weight` is not an output
    head for containing an `h`): a matrix goes to Muon unless a component is one of NOT_MUON or contains
    "embed". Embeddings are lookups, not linear maps of the residual stream, and the head's rows are per-class
    outputs; modded-nanogpt gives both to Adam. A tied `lm_head` appears once, as `transformer.wte.weight`.
    Frozen parameters are left out, as in train/runtime/optim.py: param_groups.
    """
    muon, adamw = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (muon if p.dim() == 2 and _muon_name(name) else adamw).append(p)
    return muon, adamw


# --- Muon and AdamW in one optimizer ----------------------------------------------------------------------


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on `muon_params` and AdamW on `adamw_groups`, as one optimizer with one learning-rate schedule.

    Each group carries "muon" (which update it gets) and "lr_scale": the loop sets group["lr"] = lr * lr_scale
    every step (train/runtime/optim.py: set_lr). Muon groups get lr_scale = muon_lr_ratio, so the schedule's peak
    (AdamW's, 1e-3 to 2e-3 here) times 10 gives Muon 0.01 to 0.02, the learning rate Jordan et al. use; warmup and
    decay then apply to both alike. `weight_decay` is the Muon groups'; AdamW groups bring their own
    ("weight_decay" in each dict, this default where missing). Muon's decay multiplies Muon's larger lr, so the
    same value decays the matrices muon_lr_ratio times faster than AdamW would.
    """

    def __init__(
        self,
        muon_params: Iterable[Tensor],
        adamw_groups: list[dict[str, Any]],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        momentum: float = 0.95,
        muon_lr_ratio: float = 10.0,
        weight_decay: float = 0.0,
    ) -> None:
        muon = {"params": list(muon_params), "muon": True, "lr_scale": muon_lr_ratio}
        adamw = [{"muon": False, **g} for g in adamw_groups]
        groups = [g for g in [muon, *adamw] if g["params"]]
        for g in groups:
            g["lr"] = lr * g.setdefault("lr_scale", 1.0)
        defaults = dict(
            lr=lr, betas=betas, eps=eps, momentum=momentum, nesterov=True, ns_steps=5, weight_decay=weight_decay
        )
        super().__init__(groups, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if self.param_groups[-1].setdefault("muon", False):
            _check_matrices(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = _closure_loss(closure)
        for group in self.param_groups:
            if group["muon"]:
                _step_muon_group(self.state, group)
                continue
            for p in group["params"]:
                if p.grad is not None:
                    adamw_update_(
                        p, p.grad, self.state[p], group["lr"], group["betas"], group["eps"], group["weight_decay"]
                    )
        return loss
