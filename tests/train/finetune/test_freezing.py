"""Freezing specs and layer-wise learning-rate scales over a TaskModel's parameter names, exactly."""

from __future__ import annotations

import pytest
import torch

from model import GPT, preset
from model.heads import ClassifyHead, TaskModel
from train.errors import CgptError
from train.finetune.freezing import check_freeze, freeze, layer_scales
from train.runtime.optim import param_groups


def _model(n_layer: int = 3, **config: object) -> TaskModel:
    gpt_config = preset("debug", n_layer=n_layer, **config)
    return TaskModel(GPT(gpt_config, torch.Generator().manual_seed(0)), ClassifyHead(gpt_config, 2))


def _blocks(names: list[str]) -> set[str]:
    return {n.split(".")[3] for n in names if n.startswith("backbone.transformer.h.")}


def test_each_spec_freezes_exactly_its_parameters() -> None:
    model = _model()
    assert freeze(model, "none", 3) == []
    assert freeze(model, "embeddings", 3) == ["backbone.transformer.wte.weight"]  # the tied LM head with it
    bottom = freeze(model, "bottom:2", 3)
    assert _blocks(bottom) == {"0", "1"} and "backbone.transformer.wte.weight" in bottom
    assert not any(n.startswith(("backbone.transformer.ln_f", "head.")) for n in bottom)
    probe = freeze(model, "all-but-head", 3)
    assert probe == [n for n, _ in model.named_parameters() if not n.startswith("head.")]
    trainable = {name for g in param_groups(model, 0.1) for name in g["names"]}
    assert trainable == {
        "head.score.weight",
        "head.score.bias",
    }  # frozen parameters never reach the optimizer
    assert freeze(model, "none", 3) == [] and all(p.requires_grad for p in model.parameters())  # undone


def test_learned_positions_are_embeddings_too() -> None:
    model = _model(positions="learned")
    assert set(freeze(model, "embeddings", 3)) == {
        "backbone.transformer.wte.weight",
        "backbone.transformer.wpe.weight",
    }


@pytest.mark.parametrize("spec", ["bottom:", "bottom:-1", "top:1", "head", "all"])
def test_bad_specs_name_the_choices(spec: str) -> None:
    with pytest.raises(CgptError, match="expected one of none | embeddings | bottom:K | all-but-head"):
        check_freeze(spec)


def test_more_blocks_than_the_model_has() -> None:
    with pytest.raises(CgptError, match=r"freeze='bottom:4': the model has only 3 blocks"):
        freeze(_model(), "bottom:4", 3)
    assert _blocks(freeze(_model(), "bottom:3", 3)) == {"0", "1", "2"}


def test_layer_scales_decay_with_depth() -> None:
    model = _model(positions="learned")
    scales = layer_scales(model, 0.5, 3)
    assert scales["backbone.transformer.wte.weight"] == scales["backbone.transformer.wpe.weight"] == 0.5**4
    assert [scales[f"backbone.transformer.h.{i}.attn.c_attn.weight"] for i in range(3)] == [
        0.5**3,
        0.5**2,
        0.5,
    ]
    assert scales["backbone.transformer.ln_f.weight"] == scales["head.score.weight"] == 1.0
