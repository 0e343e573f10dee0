"""FGM and PGD on the embedding output: norms per example, the eps-ball, a loss that goes up, padding left
alone, and weights (the tied wte / LM head) that the attack neither changes nor accumulates gradients in."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model import GPT, preset
from model.adversarial import adversarial_loss, attacked_outputs, fgm_delta, perturbation, project
from model.heads import ClassifyHead, GenerateHead, Head, TaskModel, hidden_states

C = preset("debug").n_embd


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (4, 10), generator=g)
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[1, 6:] = False
    mask[3, 3:] = False
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def _task(head_cls: type[Head] = ClassifyHead, train_steps: int = 0) -> TaskModel:
    torch.manual_seed(0)
    task = TaskModel(GPT(preset("debug"), torch.Generator().manual_seed(0)), head_cls(preset("debug"), 2))
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    for _ in range(train_steps):  # "trained-ish": fit the batch a little, so the loss is not flat
        opt.zero_grad()
        task(_batch())[1].backward()
        opt.step()
    return task.eval()


@pytest.fixture(scope="module")
def trained() -> TaskModel:
    """Shared by tests that only read it: none of them steps an optimizer or calls backward."""
    return _task(train_steps=8)


def _norms(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def test_fgm_delta_has_norm_epsilon_per_example_along_the_gradient() -> None:
    grad = torch.randn(3, 5, C) * torch.tensor([1e-3, 1.0, 50.0])[:, None, None]
    delta = fgm_delta(grad, 0.25)
    torch.testing.assert_close(_norms(delta), torch.full((3,), 0.25))
    cos = F.cosine_similarity(delta.flatten(1), grad.flatten(1), dim=1)
    torch.testing.assert_close(cos, torch.ones(3))
    assert torch.equal(fgm_delta(torch.zeros(2, 5, C), 0.25), torch.zeros(2, 5, C))


def test_project_shrinks_only_what_left_the_ball() -> None:
    delta = torch.randn(2, 5, C)
    delta[1] *= 1e-3 / delta[1].norm()
    out = project(delta, 0.1)
    torch.testing.assert_close(_norms(out)[0], torch.tensor(0.1))
    assert torch.equal(out[1], delta[1])


@pytest.mark.parametrize("kind, alpha, steps", [("fgm", None, 1), ("pgd", 0.04, 5)])
def test_perturbations_stay_in_the_ball_and_off_the_padding(kind: str, alpha: float | None, steps: int) -> None:
    task, batch = _task(), _batch()
    delta = perturbation(task, batch, kind, 0.1, alpha, steps)
    assert delta.shape == (4, 10, C) and not delta.requires_grad
    norms = _norms(delta)
    assert (norms <= 0.1 + 1e-6).all()
    if kind == "fgm":
        torch.testing.assert_close(norms, torch.full((4,), 0.1))
    assert torch.equal(delta[~batch["attention_mask"]], torch.zeros(11, C))


@pytest.mark.parametrize("kind, alpha, steps", [("fgm", None, 1), ("pgd", 0.02, 4)])
def test_the_perturbed_loss_is_higher_than_the_clean_loss(
    kind: str, alpha: float | None, steps: int, trained: TaskModel
) -> None:
    task, batch = trained, _batch()
    clean = task(batch)[1]
    adv = adversarial_loss(task, batch, kind, 0.05, alpha, steps)
    assert adv.item() > clean.item()
    bigger = adversarial_loss(task, batch, kind, 0.5, None if alpha is None else 10 * alpha, steps)
    assert bigger.item() > adv.item()


def test_pgd_climbs_at_least_as_high_as_its_first_step(trained: TaskModel) -> None:
    task, batch = trained, _batch()
    one = adversarial_loss(task, batch, "pgd", 0.3, 0.1, 1)
    five = adversarial_loss(task, batch, "pgd", 0.3, 0.1, 5)
    assert five.item() >= one.item()


def test_the_attack_moves_no_weight_and_leaves_no_gradient() -> None:
    task, batch = _task(GenerateHead), _batch()
    ids = batch["input_ids"]
    batch["labels"] = torch.where(batch["attention_mask"], torch.roll(ids, -1, 1), -100)
    wte = task.backbone.transformer.wte.weight
    assert task.backbone.lm_head.weight is wte  # tied
    before = wte.detach().clone()
    loss = adversarial_loss(task, batch, "pgd", 0.5, 0.2, 3)
    assert torch.equal(wte, before)
    assert all(p.grad is None for p in task.parameters())
    loss.backward()  # the perturbed loss trains the parameters
    assert wte.grad is not None and wte.grad.abs().sum() > 0


def test_the_delta_enters_after_the_embedding_and_the_lm_head_keeps_its_weight() -> None:
    task, batch = _task(GenerateHead), _batch()
    batch["labels"] = torch.where(batch["attention_mask"], torch.roll(batch["input_ids"], -1, 1), -100)
    delta = perturbation(task, batch, "fgm", 1.0)
    model = task.backbone
    wte = model.transformer.wte.weight.detach().clone()
    h = hidden_states(model, batch, embed_delta=delta)  # blocks on wte[idx] + delta
    torch.testing.assert_close(task(batch, embed_delta=delta)[0], h @ wte.T)
    x = F.embedding(batch["input_ids"], wte) + delta
    pos = model.positions(batch["input_ids"], padding_mask=batch["attention_mask"])
    torch.testing.assert_close(h, model.backbone(x, pos, padding_mask=batch["attention_mask"]))


def test_attacked_outputs_are_worse_and_carry_no_graph(trained: TaskModel) -> None:
    task, batch = trained, _batch()
    clean = task(batch)[1]
    outputs = attacked_outputs(task, batch, "fgm", 1.0)
    assert not outputs.requires_grad
    assert F.cross_entropy(outputs, batch["labels"]).item() > clean.item()


def test_bad_arguments_are_rejected() -> None:
    task, batch = _task(), _batch()
    with pytest.raises(ValueError, match="kind"):
        perturbation(task, batch, "fsgm", 0.1)
    with pytest.raises(ValueError, match="alpha"):
        perturbation(task, batch, "pgd", 0.1)
    with pytest.raises(ValueError, match="epsilon"):
        perturbation(task, batch, "fgm", 0.0)
    with pytest.raises(ValueError, match="labels"):
        perturbation(task, {k: v for k, v in batch.items() if k != "labels"}, "fgm", 0.1)
