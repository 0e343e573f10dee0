"""Shapes and recipes: GPT-2, GPT-3 and Chinchilla-like shapes, closeness, monotonicity, the heuristics."""

from __future__ import annotations

import math

import pytest

from model.config import GPTConfig, preset
from model.flops import param_counts
from train.planner import shapes
from train.planner.shapes import choose_shape, shape_config


def total(shape: tuple[int, int, int], vocab_size: int, block_size: int, arch: GPTConfig | None = None) -> int:
    config = shape_config(shape[0], shape[1], vocab_size, block_size, arch or GPTConfig())
    assert config.n_head == shape[2]
    return param_counts(config).total


def test_gpt2_124m_target_gives_gpt2_shape() -> None:
    assert choose_shape(124_439_808, 50257, 1024) == (12, 768, 12)


def test_chinchilla_70b_target_gives_a_chinchilla_like_shape() -> None:
    n_layer, n_embd, _ = choose_shape(70e9, 32000, 2048)  # Chinchilla: 80 layers x 8192
    assert 72 <= n_layer <= 88 and 7680 <= n_embd <= 8704


@pytest.mark.parametrize("n, gpt3_layers", [(350e6, 24), (1.3e9, 24), (6.7e9, 32), (175e9, 96)])
def test_gpt3_sizes_get_gpt3_like_depths(n: float, gpt3_layers: int) -> None:
    n_layer, n_embd, _ = choose_shape(n, 50257, 2048)  # Brown et al. 2020, Table 2.1
    assert abs(math.log(n_layer / gpt3_layers)) < math.log(1.4)
    assert 32 <= n_embd / n_layer <= 160


@pytest.mark.parametrize("vocab_size, block_size", [(256, 256), (8192, 512), (32000, 2048), (50257, 1024)])
def test_close_to_the_target(vocab_size: int, block_size: int) -> None:
    smallest = total((1, 32, 2), vocab_size, block_size)
    for k in range(10):
        target = 1e6 * 10 ** (k / 2)
        if target >= 3 * smallest:
            got = total(choose_shape(target, vocab_size, block_size), vocab_size, block_size)
            assert abs(got / target - 1) < 0.08, target


@pytest.mark.parametrize("vocab_size, block_size", [(65, 64), (256, 256), (50257, 1024)])
def test_monotone(vocab_size: int, block_size: int) -> None:
    targets = [1e5 * 2 ** (k / 2) for k in range(28)]  # 100k to 1B
    chosen = [choose_shape(t, vocab_size, block_size) for t in targets]
    sizes = [total(s, vocab_size, block_size) for s in chosen]
    assert sizes == sorted(sizes)  # N never goes down as the target goes up
    # widths come in steps of 64, so depth may step back by one between nearby targets; not over 4x
    coarse = chosen[::4]
    assert [s[0] for s in coarse] == sorted(s[0] for s in coarse)
    assert [s[1] for s in coarse] == sorted(s[1] for s in coarse)


def test_head_sizes() -> None:
    for target in (3e5, 1e6, 3e6, 1e7, 1e8, 1e9):
        n_layer, n_embd, n_head = choose_shape(target, 256, 256)
        head = n_embd // n_head
        assert n_embd % n_head == 0 and head == shapes.head_size_for(n_embd)
        assert head == (64 if n_embd >= 256 else 32 if n_embd >= 128 else 16)
        assert n_embd < 256 or n_embd % 64 == 0


def test_a_target_below_the_smallest_model_gets_the_smallest_model() -> None:
    assert choose_shape(1e5, 50257, 1024) == (1, 32, 2)


def test_the_architecture_is_counted() -> None:
    arch = preset("small")  # swiglu, rmsnorm, rope, no biases
    shape = choose_shape(20e6, 8192, 512, arch)
    assert abs(total(shape, 8192, 512, arch) / 20e6 - 1) < 0.05
    config = shape_config(*shape[:2], 8192, 512, arch)
    assert (config.mlp, config.norm, config.positions, config.n_kv_head) == (
        "swiglu",
        "rmsnorm",
        "rope",
        shape[2],
    )


# --- recipe -----------------------------------------------------------------------------------------------


def test_loglog_interp() -> None:
    anchors = ((1.0, 10.0), (100.0, 1000.0))
    assert shapes.loglog_interp(0.5, anchors) == 10.0 and shapes.loglog_interp(1e4, anchors) == 1000.0
    assert shapes.loglog_interp(10.0, anchors) == pytest.approx(100.0)


def test_learning_rate_follows_gpt3_and_caps_small_models() -> None:
    assert shapes.learning_rate(125e6) == pytest.approx(6e-4)  # GPT-3 Small
    assert shapes.learning_rate(1.3e9) == pytest.approx(2e-4)  # GPT-3 XL
    assert shapes.learning_rate(175e9) == pytest.approx(6e-5)
    assert shapes.learning_rate(10.7e6) == pytest.approx(1e-3)  # nanoGPT shakespeare-char
    assert shapes.learning_rate(1e5) == shapes.learning_rate(1.2e5) == 2e-3  # measured on tinyshakespeare
    rates = [shapes.learning_rate(10 ** (k / 4)) for k in range(20, 48)]
    assert rates == sorted(rates, reverse=True)


def test_batch_grows_with_size() -> None:
    assert shapes.batch_tokens_target(125e6) == pytest.approx(2**19)  # GPT-3: 0.5M tokens
    assert shapes.batch_tokens_target(1.3e9) == pytest.approx(2**20)
    assert shapes.batch_tokens_target(0.8e6) == 768  # nanoGPT's baby GPT: 12 x 64
    sizes = [shapes.batch_tokens_target(10 ** (k / 4)) for k in range(20, 48)]
    assert sizes == sorted(sizes)


def test_batch_schedule_gpt2() -> None:
    assert shapes.batch_schedule(124e6, 2.5e9, 1024) == (16, 32, 4769)  # 524,288 tokens a step


@pytest.mark.parametrize(
    "n, d, block", [(1e6, 2e7, 256), (1e6, 1e5, 256), (1e7, 2e8, 1024), (1e9, 2e10, 2048), (5e4, 3e4, 256)]
)
def test_batch_schedule_invariants(n: float, d: float, block: int) -> None:
    batch_size, grad_accum, steps = shapes.batch_schedule(n, d, block)
    batch_tokens = batch_size * grad_accum * block
    assert batch_size * block <= max(block, shapes.MICRO_BATCH_TOKENS)
    assert batch_tokens <= max(block, d / shapes.MIN_STEPS)  # at least MIN_STEPS steps when D allows
    assert steps == math.ceil(d / batch_tokens)
    assert steps >= min(shapes.MIN_STEPS, math.ceil(d / block))


def test_warmup() -> None:
    assert [shapes.warmup_steps(s) for s in (1, 100, 5000, 10**6)] == [1, 3, 150, 1000]


def test_depth_variants_add_the_shallowest_shape_of_about_the_same_size() -> None:
    from model.config import arch

    modern, found = arch("modern"), 0
    for vocab, block in ((67, 128), (50304, 1024)):
        for target in (3.5e4, 1.4e5, 2.2e5, 3e5, 6e5, 2e6, 2e7, 1.2e8, 1e9):
            variants = shapes.depth_variants(target, vocab, block, modern)
            assert variants[0] == shapes.choose_shape(target, vocab, block, modern)[:2]  # the planner's own first
            if len(variants) == 1:
                continue
            found += 1
            (n_layer, n_embd), (depth, width) = variants
            assert depth < n_layer and width > n_embd  # fewer, wider layers
            config = shapes.shape_config(depth, width, vocab, block, modern)
            counts = param_counts(config)
            assert abs(math.log(counts.total / target)) < math.log(1.3)
            assert width / depth <= shapes.MAX_SKEW * shapes.target_aspect(counts.non_embedding)
            # the shallowest such shape: one layer fewer would be too skewed or too far from the target
            fewer = [
                c for c in shapes._candidates(target, vocab, block, modern)
                if c.n_layer < depth and abs(math.log(param_counts(c).total / target)) < math.log(1.3)
                and c.n_embd / c.n_layer <= shapes.MAX_SKEW * shapes.target_aspect(param_counts(c).non_embedding)
            ]  # fmt: skip
            assert not fewer
    assert found >= 10
    assert shapes.depth_variants(2.2e5, 67, 128, modern) == [(2, 96), (1, 128)]  # measured: 1 x 128 runs 1.3x faster
    assert shapes.depth_variants(2e4, 67, 128, modern) == [shapes.choose_shape(2e4, 67, 128, modern)[:2]]
