"""Task heads: pooling under right and left padding, ignored labels, the tied LM head, the registry and a
user-defined head loaded by "module.path:ClassName", and that each head can fit one batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model import GPT, ConfigError, GPTConfig, preset
from model.heads import (
    HEADS,
    ClassifyHead,
    GenerateHead,
    Head,
    MeanClassifyHead,
    RegressHead,
    TagHead,
    TaskModel,
    check_head_class,
    get_head,
    hidden_states,
    register_head,
)


class MarginHead(Head):
    """A user's head, as a README would show it: a hinge loss on the first token's hidden state."""

    def __init__(self, config: GPTConfig, num_labels: int) -> None:
        super().__init__(config, num_labels)
        self.score = nn.Linear(config.n_embd, num_labels)

    def project(self, h: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.score(h[:, 0])  # (B, K)

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.multi_margin_loss(outputs, batch["labels"])

    def predict(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.argmax(-1)


class NotAHead(nn.Module):
    pass


class OddTaskHead(MarginHead):
    task = "translate"


def _config() -> GPTConfig:
    return preset("debug")


def _model(seed: int = 0) -> GPT:
    return GPT(_config(), torch.Generator().manual_seed(seed)).eval()


def _pad(rows: list[list[int]], side: str, pad_id: int = 3) -> dict[str, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids, mask = [], []
    for r in rows:
        fill = T - len(r)
        ids.append([pad_id] * fill + r if side == "left" else r + [pad_id] * fill)
        mask.append([False] * fill + [True] * len(r) if side == "left" else [True] * len(r) + [False] * fill)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


ROWS = [[5, 9, 200, 17, 33, 4, 90], [12, 70, 8], [100, 101, 102, 103, 104]]


def _alone(head: Head, model: GPT, row: list[int]) -> torch.Tensor:
    return head(model, _pad([row], "right"))[0]


@pytest.mark.parametrize("head_cls", [ClassifyHead, MeanClassifyHead, RegressHead])
@pytest.mark.parametrize("side", ["right", "left"])
def test_sequence_heads_read_the_same_values_under_padding(head_cls: type[Head], side: str) -> None:
    torch.manual_seed(0)
    model, head = _model(), head_cls(_config(), 3)
    batched = head(model, _pad(ROWS, side))
    for b, row in enumerate(ROWS):
        torch.testing.assert_close(batched[b], _alone(head, model, row), rtol=1e-5, atol=1e-5)


def test_last_token_and_mean_pooling_read_what_they_say() -> None:
    model = _model()
    batch = _pad(ROWS, "left")
    h = hidden_states(model, _pad([ROWS[1]], "right"))[0]  # (T, C) of the short row alone
    last, mean = ClassifyHead(_config(), 2), MeanClassifyHead(_config(), 2)
    mean.score.load_state_dict(last.score.state_dict())
    torch.testing.assert_close(last(model, batch)[1], last.score(h[-1]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean(model, batch)[1], last.score(h.mean(0)), rtol=1e-5, atol=1e-5)


def test_unpadded_batches_match_the_models_own_hidden_states() -> None:
    model = _model()
    idx = torch.tensor([ROWS[0], ROWS[0][::-1]])
    batch = {"input_ids": idx, "attention_mask": torch.ones_like(idx, dtype=torch.bool)}
    torch.testing.assert_close(hidden_states(model, batch), model.hidden_states(idx))


def test_tag_head_ignores_minus_100_labels() -> None:
    torch.manual_seed(0)
    model, head = _model(), TagHead(_config(), 4)
    batch = _pad(ROWS, "right")
    labels = torch.full(batch["input_ids"].shape, -100)
    labels[0, [0, 2, 5]] = torch.tensor([1, 3, 0])
    labels[1, 1] = 2
    batch["labels"] = labels
    outputs = head(model, batch)
    assert outputs.shape == (3, 7, 4)
    keep = labels != -100
    expected = F.cross_entropy(outputs[keep], labels[keep])
    torch.testing.assert_close(head.loss(outputs, batch), expected)
    noisy = outputs.clone()
    noisy[~keep] = torch.randn_like(noisy[~keep]) * 10  # positions whose label is ignored
    torch.testing.assert_close(head.loss(noisy, batch), expected)
    assert head.predict(outputs, batch).shape == (3, 7)


def test_generate_head_is_the_tied_lm_head_and_its_loss() -> None:
    model, head = _model(), GenerateHead(_config(), 0)
    assert list(head.parameters()) == []  # no new weights: the model's own LM head, tied to wte
    idx = torch.tensor([ROWS[0]])
    targets = torch.tensor([[-100, -100, -100, 17, 33, 4, 90]])
    batch = {"input_ids": idx, "attention_mask": torch.ones_like(idx, dtype=torch.bool), "labels": targets}
    logits, loss = model(idx, targets)
    outputs = head(model, batch)
    torch.testing.assert_close(outputs, logits)
    torch.testing.assert_close(head.loss(outputs, batch), loss)


def test_regress_head_is_mean_squared_error_on_one_output() -> None:
    model, head = _model(), RegressHead(_config())
    batch = _pad(ROWS, "right")
    batch["labels"] = torch.tensor([0.5, -1.0, 2.0])
    outputs = head(model, batch)
    assert outputs.shape == (3,)
    torch.testing.assert_close(head.loss(outputs, batch), ((outputs - batch["labels"]) ** 2).mean())


def test_task_model_returns_no_loss_without_labels_and_adds_embed_delta() -> None:
    task = TaskModel(_model(), ClassifyHead(_config(), 2)).eval()
    batch = _pad(ROWS, "right")
    outputs, loss = task(batch)
    assert loss is None and outputs.shape == (3, 2)
    zeros = torch.zeros(3, 7, _config().n_embd)
    torch.testing.assert_close(task(batch, embed_delta=zeros)[0], outputs)
    assert not torch.allclose(task(batch, embed_delta=zeros + 0.5)[0], outputs)
    torch.testing.assert_close(task.predict(batch), outputs.argmax(-1))


def test_registry_names_the_built_in_heads() -> None:
    assert {"classify", "classify-mean", "tag", "generate", "regress"} <= set(HEADS)
    assert get_head("tag") is TagHead
    tasks = {name: get_head(name).task for name in ("classify", "classify-mean", "tag", "generate", "regress")}
    assert tasks == {
        "classify": "classify",
        "classify-mean": "classify",
        "tag": "tag",
        "generate": "generate",
        "regress": "regress",
    }
    with pytest.raises(ValueError, match="already registered"):
        register_head("tag")(TagHead)


def test_a_user_head_is_passed_as_a_class_and_trains() -> None:
    """The model package never imports a module because a string names it (a checkpoint could hold the string);
    the command line imports a head the user names, and hands the class over."""
    with pytest.raises(ConfigError, match="imported only when named on the command line"):
        get_head("tests.model.test_heads:MarginHead")
    cls = check_head_class(MarginHead, "tests.model.test_heads:MarginHead")
    assert cls is MarginHead and cls.task == "classify"  # what a user's head takes unless it says otherwise
    torch.manual_seed(0)
    task = TaskModel(_model(), cls(_config(), 3))
    batch = {**_pad(ROWS, "right"), "labels": torch.tensor([2, 0, 1])}
    first = _fit(task, batch, steps=12)
    assert task(batch)[1].item() < 0.1 * first


def test_bad_heads_fail_with_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not known"):
        get_head("nope")
    with pytest.raises(ConfigError, match="not a subclass"):
        check_head_class(NotAHead, "tests.model.test_heads:NotAHead")
    with pytest.raises(ConfigError, match="task='translate' is not one of"):
        check_head_class(OddTaskHead, "tests.model.test_heads:OddTaskHead")


def _fit(task: TaskModel, batch: dict[str, torch.Tensor], steps: int) -> float:
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    first = None
    for _ in range(steps):
        _, loss = task(batch)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first


@pytest.mark.parametrize("name", ["classify", "classify-mean", "tag", "regress"])
def test_each_head_fits_one_batch(name: str) -> None:
    torch.manual_seed(0)
    task = TaskModel(_model(), get_head(name)(_config(), 3))
    batch = _pad(ROWS, "left")
    if name == "tag":
        batch["labels"] = torch.where(batch["attention_mask"], batch["input_ids"] % 3, -100)
    elif name == "regress":
        batch["labels"] = torch.tensor([1.0, -2.0, 0.5])
    else:
        batch["labels"] = torch.tensor([2, 0, 1])
    first = _fit(task, batch, steps=12)
    assert task(batch)[1].item() < 0.1 * first
