"""Parameter and FLOP formulas (model/flops.py) against numel() and known values."""

from __future__ import annotations

import pytest

from model import GPT, GPTConfig, flops_per_token, param_counts, preset
from model.flops import chinchilla_forward_flops

CONFIGS = [
    preset("debug"),
    preset("baby"),
    GPTConfig(vocab_size=100, block_size=16, n_layer=3, n_head=4, n_embd=64, bias=False, tie_embeddings=False),
    GPTConfig(
        vocab_size=100,
        block_size=16,
        n_layer=2,
        n_head=6,
        n_embd=96,
        n_kv_head=3,
        mlp="swiglu",
        norm="rmsnorm",
        positions="rope",
        bias=True,
    ),
    GPTConfig(vocab_size=77, block_size=8, n_layer=1, n_head=2, n_embd=32, norm="layernorm", bias=False),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.mlp}-{c.norm}-{c.positions}-kv{c.n_kv_head}")
def test_param_formula_matches_numel(config: GPTConfig) -> None:
    model = GPT(config)
    counts = param_counts(config)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.non_embedding == model.num_params(non_embedding=True)


def test_gpt2_124m_is_exact() -> None:
    config = preset("gpt2")
    assert param_counts(config).total == 124_439_808
    assert GPT(config).num_params() == 124_439_808


def test_mfu_flops_per_token_gpt2() -> None:
    # nanoGPT's estimate_mfu: 6N + 12 L H Q T with N excluding the position embedding.
    c = preset("gpt2")
    n = 124_439_808 - 1024 * 768
    assert flops_per_token(c) == 6 * n + 12 * 12 * 12 * 64 * 1024


def test_untied_head_counts_as_matmul_not_the_lookup() -> None:
    tied = GPTConfig(vocab_size=1000, block_size=16, n_layer=1, n_head=2, n_embd=64)
    untied = tied.replace(tie_embeddings=False)
    assert param_counts(untied).total - param_counts(tied).total == 1000 * 64
    assert param_counts(untied).matmul == param_counts(tied).matmul


def test_appendix_f_by_hand_for_a_tiny_config() -> None:
    c = GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=2, n_embd=8)  # head size 4, ffw 32
    s, d, h, k, V, ffw = 4, 8, 2, 4, 10, 32
    layer = (
        2 * 3 * s * d * k * h
        + 2 * s * s * k * h
        + 3 * h * s * s
        + 2 * s * s * k * h
        + 2 * s * k * h * d
        + 2 * s * (d * ffw + d * ffw)
    )
    assert chinchilla_forward_flops(c, embeddings=False) == layer
    assert chinchilla_forward_flops(c) == layer + 2 * s * V * d * 2
