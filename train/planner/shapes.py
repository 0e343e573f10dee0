"""The shape and the training recipe of a GPT with a given number of parameters.

Shape. `choose_shape` turns a target N - counting embeddings, as Chinchilla does, for the chosen vocabulary
and context - into (n_layer, n_embd, n_head), with N computed exactly by `model.flops.param_counts`. Depth
against width matters little: Kaplan et al. 2020 (arXiv 2001.08361, Fig. 5) find the loss within a few percent
over a wide range of n_embd / n_layer at fixed non-embedding N. So we follow the ratios the reference models
use, interpolated in log N over their non-embedding size (`ASPECT_ANCHORS`):

    nanoGPT CPU baby GPT      4 x 128   (0.8M)  32      Chinchilla Table A9 1.1B   26 x 1792  (1.0B)  69
    nanoGPT shakespeare-char  6 x 384   (11M)   64      Chinchilla Table A9 6.8B   40 x 3584  (6.2B)  90
    GPT-2 124M               12 x 768   (85M)   64      Chinchilla 70B (Table 4)   80 x 8192  (64B)  102
    (Table A9 keeps 64 from 44M, 8 x 512, to 251M, 16 x 1024)  GPT-3 175B (Table 2.1)  96 x 12288 (174B) 128

The shape that best balances closeness to the target N against closeness to that ratio wins. Heads are 64 wide
(GPT-2, GPT-3 small), 32 below n_embd 256 and 16 below 128, and n_embd is a multiple of the head size.

Recipe. Batch size and peak learning rate by model size, interpolated in log N (`BATCH_ANCHORS`,
`LR_ANCHORS`) between GPT-3's Table 2.1 (Brown et al. 2020: 125M 0.5M tokens 6e-4 ... 175B 3.2M tokens 6e-5)
and nanoGPT's small models (0.8M params: 12 x 64 tokens; 10.7M: 64 x 256 tokens at 1e-3). Tiny models take a
larger rate: 2e-3 at 120k parameters, measured on this project's CPU benchmark (Kaplan et al. 2020, App. D.6,
fit LR(N) = 0.003239 - 0.0001395 ln N, which also rises as N shrinks: 1.6e-3 at 100k). The batch is capped
so that a run has at least `MIN_STEPS` optimizer steps. Warmup is 3% of the steps, at most 1000 (llm.c's GPT-2
124M: 700 of 19073); the cosine schedule then decays the rate 10x over exactly the planned steps, as Chinchilla
does (a cosine cycle more than ~25% longer than the run clearly hurts: Hoffmann et al. 2022, Section 3.1 and
Fig. A1).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable, Sequence

from model.config import GPTConfig
from model.flops import param_counts

# (non-embedding parameters, n_embd / n_layer) of the reference models in the module docstring
ASPECT_ANCHORS = (
    (0.79e6, 32.0),
    (10.6e6, 64.0),
    (85e6, 64.0),
    (1.0e9, 69.0),
    (6.2e9, 90.0),
    (64e9, 102.0),
    (174e9, 128.0),
)
# (parameters, batch size in tokens): nanoGPT baby GPT, nanoGPT shakespeare-char, then GPT-3 Table 2.1
BATCH_ANCHORS = (
    (0.8e6, 768.0),
    (10.7e6, 16384.0),
    (125e6, 2.0**19),
    (760e6, 2.0**19),
    (1.3e9, 2.0**20),
    (6.7e9, 2.0**21),
    (13e9, 2.0**21),
    (175e9, 3.2e6),
)
# (parameters, peak learning rate): measured here (tinyshakespeare, char-level, a 113k-parameter model on
# 4.8M tokens: 2e-3 reached val loss 1.78 where 1e-3 reached 1.90), nanoGPT shakespeare-char, GPT-3 Table 2.1
LR_ANCHORS = (
    (1.2e5, 2e-3),
    (10.7e6, 1e-3),
    (125e6, 6e-4),
    (350e6, 3e-4),
    (760e6, 2.5e-4),
    (1.3e9, 2e-4),
    (2.7e9, 1.6e-4),
    (6.7e9, 1.2e-4),
    (13e9, 1e-4),
    (175e9, 6e-5),
)
MIN_STEPS = 200
WARMUP_FRACTION, MAX_WARMUP = 0.03, 1000
LR_DECAY = 10.0  # Chinchilla: cosine from the peak down to peak / 10
DEFAULT_BLOCK_SIZE = 256  # the context `cgpt pretrain --flops` plans for unless --block-size says
# ... and `--minutes`: measured on tinyshakespeare at 0.5 minutes, the plan at context 128 (2 x 80) reached 1.871
# after 27 s of training where the one at 256 (3 x 48, attention ~a third of its FLOPs) ended at 2.021 after 26 s
MINUTES_BLOCK_SIZE = 128
MICRO_BATCH_TOKENS = 16384  # tokens per forward pass; gradient accumulation makes up the rest of the batch
# allowed widths: multiples of the head size (16 below 128, 32 below 256, 64 above), up to GPT-3 175B's 2x
WIDTHS = (*range(32, 128, 16), *range(128, 256, 32), *range(256, 24576 + 1, 64))
MAX_LAYERS = 160


def loglog_interp(x: float, anchors: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear interpolation of log y in log x through `anchors`, constant beyond both ends."""
    if x <= anchors[0][0]:
        return anchors[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(anchors):
        if x <= x1:
            t = math.log(x / x0) / math.log(x1 / x0)
            return math.exp(math.log(y0) + t * math.log(y1 / y0))
    return anchors[-1][1]


# --- shape ------------------------------------------------------------------------------------------------


def head_size_for(n_embd: int) -> int:
    return 64 if n_embd >= 256 else 32 if n_embd >= 128 else 16


def shape_config(n_layer: int, n_embd: int, vocab_size: int, block_size: int, arch: GPTConfig) -> GPTConfig:
    """`arch` (its mlp, norm, positions, bias, tying, ...) at this depth and width, with plain multi-head
    attention (n_kv_head = n_head)."""
    return arch.replace(
        vocab_size=vocab_size,
        block_size=block_size,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_embd // head_size_for(n_embd),
        n_kv_head=None,
    )


def target_aspect(non_embedding_params: float) -> float:
    return loglog_interp(non_embedding_params, ASPECT_ANCHORS)


def _total_params(n_layer: int, n_embd: int, vocab_size: int, block_size: int, arch: GPTConfig) -> int:
    return param_counts(shape_config(n_layer, n_embd, vocab_size, block_size, arch)).total


def _first_width_at_least(target: float, guess: float, size: Callable[[int], int]) -> int:
    """Index of the first width in WIDTHS whose model has >= target parameters (len(WIDTHS) if none),
    walking from the width nearest `guess`."""
    i = min(bisect.bisect_left(WIDTHS, guess), len(WIDTHS) - 1)
    if size(WIDTHS[i]) >= target:
        while i > 0 and size(WIDTHS[i - 1]) >= target:
            i -= 1
        return i
    while i < len(WIDTHS) and size(WIDTHS[i]) < target:
        i += 1
    return i


def _candidates(target: float, vocab_size: int, block_size: int, arch: GPTConfig) -> list[GPTConfig]:
    """For each depth, the widths just below and just above the target N."""
    out: list[GPTConfig] = []
    deepest = min(MAX_LAYERS, 3 * round((target / (12 * 32**2)) ** (1 / 3)) + 2)  # 3x the depth at ratio 32
    for n_layer in range(1, deepest + 1):
        size = functools.cache(lambda w, n=n_layer: _total_params(n, w, vocab_size, block_size, arch))
        b = vocab_size + block_size + 13 * n_layer  # N ~ 12 L w^2 + b w: the guess to start from
        guess = (-b + math.sqrt(b * b + 48 * n_layer * target)) / (24 * n_layer)
        i = _first_width_at_least(target, guess, size)
        if i == 0 and n_layer > 1 and size(WIDTHS[0]) > 2 * target:
            break  # deeper models only get bigger
        widths = [WIDTHS[j] for j in (i - 1, i) if 0 <= j < len(WIDTHS)]
        out += [shape_config(n_layer, w, vocab_size, block_size, arch) for w in widths]
    return out


def choose_shape(
    target_params: float, vocab_size: int, block_size: int, arch: GPTConfig | None = None
) -> tuple[int, int, int]:
    """(n_layer, n_embd, n_head) for about `target_params` parameters, embeddings included.

    Each candidate pays (miss / 5%)^2 + (skew / 1.5x)^2, where miss is its N against the target and skew its
    n_embd / n_layer against the reference ratio, both as log ratios: missing N by 5% costs as much as a ratio
    1.5x off, a difference Kaplan et al.'s Fig. 5 shows to matter little. Widths come in steps of 64, so the
    depth may step back by one between nearby targets; the chosen N does not (tests/train/planner/test_shapes.py).
    """
    arch = GPTConfig() if arch is None else arch

    def cost(cfg: GPTConfig) -> float:
        counts = param_counts(cfg)
        miss = math.log(counts.total / target_params) / math.log(1.05)
        skew = math.log(cfg.n_embd / cfg.n_layer / target_aspect(counts.non_embedding)) / math.log(1.5)
        return miss**2 + skew**2

    best = min(_candidates(target_params, vocab_size, block_size, arch), key=cost)
    return best.n_layer, best.n_embd, best.n_head


# a wall-clock plan weighs shapes up to this many times wider per layer than the reference ratio: Kaplan et al.
# 2020 (Fig. 5) find the loss within a few percent while n_embd / n_layer varies over a wide range at fixed
# non-embedding N; we stay well inside it (measured here at 25 s of training: 1 x 128, 4x the ratio, reached
# 1.809; 1 x 160, 5x, only 1.912 - it is also slower per parameter)
MAX_SKEW = 4.0


def depth_variants(
    target_params: float, vocab_size: int, block_size: int, arch: GPTConfig | None = None
) -> list[tuple[int, int]]:
    """(n_layer, n_embd) shapes of about `target_params` parameters: `choose_shape`'s, then the shallowest shape
    at most MAX_SKEW times the reference ratio whose N is within 30% of the target (the nearest such width;
    widths come in coarse steps at small N), if that is a different shape.

    The law sees N and D, not the shape, and Kaplan et al. find the loss nearly indifferent to the aspect ratio;
    measured here per token it is (tinyshakespeare, the planner's recipe: 1 x 128 reached 1.899 after 774 steps of
    6 x 128 tokens, 2 x 96 1.900 after 860). But fewer, wider layers run faster - fewer operations per token,
    less attention work (12 L d T FLOPs per token) - and on a CPU much faster (1 x 128 at 39k tokens/s, 2 x 96 at
    30k, 4 x 64 at 19k). So a wall-clock plan weighs both by measured speed (plan.plan_for_minutes). Two shapes
    per size, not every depth: each shape weighed is a shape probed.
    """
    arch = GPTConfig() if arch is None else arch
    usual = choose_shape(target_params, vocab_size, block_size, arch)[:2]
    for depth in range(1, usual[0]):
        near = [
            c
            for c in _candidates(target_params, vocab_size, block_size, arch)
            if c.n_layer == depth
            and abs(math.log(param_counts(c).total / target_params)) < math.log(1.3)
            and c.n_embd / depth <= MAX_SKEW * target_aspect(param_counts(c).non_embedding)
        ]
        if near:
            best = min(near, key=lambda c: abs(math.log(param_counts(c).total / target_params)))
            return [usual, (best.n_layer, best.n_embd)]
    return [usual]


# --- recipe -----------------------------------------------------------------------------------------------


def learning_rate(n_params: float) -> float:
    """Peak AdamW learning rate for a model of N parameters (GPT-3 Table 2.1 down to 2e-3 for tiny models)."""
    return loglog_interp(n_params, LR_ANCHORS)


def batch_tokens_target(n_params: float) -> float:
    """The batch size in tokens that models of this size were trained with (before the MIN_STEPS cap)."""
    return loglog_interp(n_params, BATCH_ANCHORS)


def batch_schedule(
    n_params: float, n_tokens: float, block_size: int, micro_batch_tokens: int = MICRO_BATCH_TOKENS
) -> tuple[int, int, int]:
    """(batch_size, grad_accum, steps): sequences per micro-batch, micro-batches per step, optimizer steps.

    The batch is whole sequences, at least one, at most n_tokens / MIN_STEPS tokens; a micro-batch holds at
    most `micro_batch_tokens` tokens (one sequence at least); steps = ceil(n_tokens / batch tokens).
    """
    wanted = round(batch_tokens_target(n_params) / block_size)
    cap = math.floor(n_tokens / (MIN_STEPS * block_size))
    seqs = max(1, min(wanted, cap))
    micro = max(1, micro_batch_tokens // block_size)
    grad_accum = math.ceil(seqs / micro)
    batch_size = min(micro, round(seqs / grad_accum))  # 506 sequences -> 32 x 16, not 32 x 15
    if batch_size * grad_accum > max(cap, 1):  # rounding up must not cut the run below MIN_STEPS
        batch_size = max(1, cap // grad_accum)
    steps = math.ceil(n_tokens / (batch_size * grad_accum * block_size))
    return batch_size, grad_accum, steps


def warmup_steps(steps: int) -> int:
    """Linear warmup: 3% of the steps, at least 1, at most 1000."""
    return max(1, min(MAX_WARMUP, round(WARMUP_FRACTION * steps)))
