"""Adversarial perturbations of the embedding output: FGM (Miyato et al. 2017) and PGD (Madry et al. 2018).

Both look for a perturbation r (B, T, C) of the embeddings x = wte(idx) (+ wpe) that raises the loss, inside
an L2 ball of radius epsilon per example, measured over the whole sequence (T, C) as Miyato et al. do:

    FGM:  r = epsilon * g / ||g||_2,  g = d loss / d x  at r = 0        (one gradient)
    PGD:  r <- project_eps(r + alpha * g / ||g||_2),  g at the current r  (K steps, the inner max)

r enters the model through `embed_delta`, i.e. it is added to the embedding *output*. Perturbing the token
embedding weight instead would also move the LM head tied to it (Press & Wolf 2017) and every other occurrence
of the token. Gradients for the attack come from `torch.autograd.grad` with respect to r only, so parameter
`.grad` fields are untouched; the returned perturbation is detached (a constant, as in both papers).
Padding positions are never perturbed. PGD starts at r = 0 rather than at Madry's random point in the ball,
which keeps the attack deterministic; its first step is then an FGM step of size alpha.
"""

from __future__ import annotations

import torch

from model.config import ATTACKS
from model.heads import Batch, TaskModel


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    """L2 norm over all but the batch dimension, shaped (B, 1, 1) to broadcast against (B, T, C)."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def fgm_delta(grad: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Miyato et al. 2017: r = epsilon * g / ||g||_2 per example; a zero gradient gives a zero r."""
    return epsilon * grad / _per_example_norm(grad).clamp(min=1e-12)


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Scale each example's delta back onto the L2 ball of radius epsilon if it has left it."""
    norm = _per_example_norm(delta)
    return delta * (epsilon / norm.clamp(min=1e-12)).clamp(max=1.0)


def _zero_delta(task_model: TaskModel, batch: Batch) -> torch.Tensor:
    wte = task_model.backbone.transformer.wte.weight
    B, T = batch["input_ids"].shape
    return torch.zeros(B, T, wte.shape[1], device=wte.device, dtype=wte.dtype)


def loss_gradient(task_model: TaskModel, batch: Batch, delta: torch.Tensor) -> torch.Tensor:
    """d loss / d embed_delta at `delta` (B, T, C), zero on padding; parameter gradients are not touched."""
    delta = delta.detach().requires_grad_(True)
    with torch.enable_grad():
        _, loss = task_model(batch, embed_delta=delta)
        if loss is None:
            raise ValueError("an adversarial perturbation needs a batch with labels")
        (grad,) = torch.autograd.grad(loss, delta)
    return grad * batch["attention_mask"].unsqueeze(-1).to(grad.dtype)


def pgd_delta(task_model: TaskModel, batch: Batch, epsilon: float, alpha: float, steps: int) -> torch.Tensor:
    """Madry et al. 2018: `steps` normalised-gradient steps of size alpha, each projected to the eps-ball."""
    if steps < 1 or alpha <= 0:
        raise ValueError(f"PGD needs steps >= 1 and alpha > 0, got steps={steps}, alpha={alpha}")
    delta = _zero_delta(task_model, batch)
    for _ in range(steps):
        grad = loss_gradient(task_model, batch, delta)
        delta = project(delta + fgm_delta(grad, alpha), epsilon)
    return delta.detach()


def perturbation(
    task_model: TaskModel, batch: Batch, kind: str, epsilon: float, alpha: float | None = None, steps: int = 1
) -> torch.Tensor:
    """The detached perturbation (B, T, C) of the embedding output that `kind` ("fgm" | "pgd") finds."""
    if kind not in ATTACKS:
        raise ValueError(f"adversarial kind={kind!r}: expected one of {ATTACKS}")
    if epsilon <= 0:
        raise ValueError(f"adversarial epsilon={epsilon} must be positive")
    if kind == "fgm":
        return fgm_delta(loss_gradient(task_model, batch, _zero_delta(task_model, batch)), epsilon).detach()
    if alpha is None:
        raise ValueError("PGD needs a step size alpha")
    return pgd_delta(task_model, batch, epsilon, alpha, steps)


def adversarial_loss(
    task_model: TaskModel,
    batch: Batch,
    kind: str,
    epsilon: float,
    alpha: float | None = None,
    steps: int = 1,
    forward: torch.nn.Module | None = None,
) -> torch.Tensor:
    """The loss at the perturbed embeddings, differentiable in the parameters: add it to the clean loss.

    Costs one extra forward and backward (FGM) or `steps` of them (PGD) on top of the perturbed forward. The
    perturbation is found on `task_model`; the loss is computed by `forward` (the same model as the training
    loop runs it: compiled or wrapped), `task_model` itself by default.
    """
    delta = perturbation(task_model, batch, kind, epsilon, alpha, steps)
    _, loss = (forward or task_model)(batch, embed_delta=delta)
    return loss


@torch.no_grad()
def attacked_outputs(
    task_model: TaskModel, batch: Batch, kind: str, epsilon: float, alpha: float | None = None, steps: int = 1
) -> torch.Tensor:
    """Evaluation under attack: the head's outputs at the worst-case embeddings of norm <= epsilon.

    The attack uses the batch's true labels, so it needs them; call `head.predict` on the result.
    """
    delta = perturbation(task_model, batch, kind, epsilon, alpha, steps)
    outputs, _ = task_model(batch, embed_delta=delta)
    return outputs
