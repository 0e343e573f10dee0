"""GPTConfig validation, presets and serialisation."""

from __future__ import annotations

import pytest

from model import GPT, PRESETS, ConfigError, GPTConfig, preset


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_layer": 0}, "n_layer"),
        ({"vocab_size": -3}, "vocab_size"),
        ({"n_embd": 100, "n_head": 3}, "n_embd"),
        ({"n_kv_head": 5}, "n_kv_head"),
        ({"mlp": "relu"}, "mlp"),
        ({"norm": "batchnorm"}, "norm"),
        ({"positions": "alibi"}, "positions"),
        ({"attention": "flash"}, "attention"),
        ({"dropout": 1.0}, "dropout"),
        ({"fused": ("norm", "magic")}, "fused"),
        ({"fused": ("rope",)}, "fused"),  # rope kernel without rotary positions
        ({"fused": ("swiglu",)}, "fused"),  # swiglu kernel with a gelu MLP
        ({"rope_theta": 0.0}, "rope_theta"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}=.*expected"):
        GPTConfig(**changes)


def test_kv_heads_default_to_query_heads_and_config_is_frozen() -> None:
    c = GPTConfig(n_head=8, n_embd=256)
    assert c.n_kv_head == 8
    with pytest.raises(AttributeError):
        c.n_layer = 3  # type: ignore[misc]


def test_swiglu_hidden_is_about_8_thirds_rounded_to_64() -> None:
    assert GPTConfig(n_embd=768, n_head=12, mlp="swiglu").mlp_hidden == 2048
    assert GPTConfig(n_embd=100, n_head=4, mlp="swiglu").mlp_hidden == 320  # 266 -> 320
    assert GPTConfig(n_embd=768, n_head=12).mlp_hidden == 3072


def test_dict_round_trip_and_unknown_keys() -> None:
    c = preset("debug", fused=("norm",))
    assert GPTConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown GPTConfig field"):
        GPTConfig.from_dict({**c.to_dict(), "n_layers": 3})


def test_presets_build_and_unknown_preset_errors() -> None:
    assert {"debug", "gpt2"} <= set(PRESETS)
    assert GPT(preset("debug")).num_params() > 0
    with pytest.raises(ConfigError, match="preset='nope'"):
        preset("nope")


def test_replacing_n_head_keeps_multi_head_and_keeps_explicit_groups() -> None:
    assert preset("baby").replace(n_head=2).n_kv_head == 2
    assert preset("debug").replace(n_head=8).n_kv_head == 2  # GQA stays as asked
