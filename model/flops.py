"""Parameter counts and FLOPs per token as pure functions of a GPTConfig: the one home for these formulas.

The planner, the MFU figure and the tests all use these, and the tests bind them to `numel()`.

- `param_counts`: every parameter tensor of `GPT(config)`, summed by kind.
- `flops_per_token`: the training cost used for MFU (Kaplan et al. 2020; PaLM App. B; nanoGPT):
  6 N_matmul + 12 L H Q T, where N_matmul counts the weights that take part in a matrix multiply per token
  (the lookup tables do not; a tied embedding does, as the LM head), and 12 L H Q T is attention's QK^T and
  AV over a context of T (forward 2+2, backward twice that, per layer, head and head-size unit).
- `chinchilla_flops_per_token`: Hoffmann et al. 2022, Appendix F: their forward count (embeddings, QKV,
  logits, softmax, AV, projections, dense, final logits) times 3 for forward + backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import GPTConfig


@dataclass(frozen=True)
class ParamCounts:
    token_embedding: int
    position_embedding: int
    blocks: int
    final_norm: int
    lm_head: int  # 0 when tied to the token embedding

    @property
    def total(self) -> int:
        return self.token_embedding + self.position_embedding + self.blocks + self.final_norm + self.lm_head

    @property
    def non_embedding(self) -> int:
        """Kaplan et al.'s N: everything but the token and position lookup tables."""
        return self.total - self.token_embedding - self.position_embedding

    @property
    def matmul(self) -> int:
        """Weights used in a matrix multiply for every token: blocks, final norm, and the LM head (tied or not)."""
        return self.non_embedding + (self.token_embedding if self.lm_head == 0 else 0)


def _norm_params(config: GPTConfig) -> int:
    if config.norm == "rmsnorm":
        return config.n_embd
    return config.n_embd * (2 if config.bias else 1)


def block_params(config: GPTConfig) -> int:
    C, hs, kv, H = config.n_embd, config.head_size, config.n_kv_head, config.mlp_hidden
    b = 1 if config.bias else 0
    qkv_out = C + 2 * kv * hs
    attn = C * qkv_out + b * qkv_out + C * C + b * C
    if config.mlp == "gelu":
        mlp = C * H + b * H + H * C + b * C
    else:  # swiglu: gate and up projections (C -> H each), down projection (H -> C)
        mlp = 2 * (C * H + b * H) + H * C + b * C
    return 2 * _norm_params(config) + attn + mlp


def param_counts(config: GPTConfig) -> ParamCounts:
    C, V = config.n_embd, config.vocab_size
    return ParamCounts(
        token_embedding=V * C,
        position_embedding=config.block_size * C if config.positions == "learned" else 0,
        blocks=config.n_layer * block_params(config),
        final_norm=_norm_params(config),
        lm_head=0 if config.tie_embeddings else V * C,
    )


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward), the MFU convention: 6 N_matmul + 12 L H Q T."""
    T = config.block_size if seq_len is None else seq_len
    attention = 12 * config.n_layer * config.n_head * config.head_size * T
    return 6 * param_counts(config).matmul + attention


def chinchilla_forward_flops(config: GPTConfig, seq_len: int | None = None, embeddings: bool = True) -> int:
    """Hoffmann et al. 2022, Appendix F: forward FLOPs for one sequence of length s.

    `embeddings=False` leaves out the embedding and final-logit terms: only then do the paper's Table A4
    ratios come out (a known inconsistency of the paper). Generalised to grouped-query attention (K and V
    projections use n_kv_head heads) and to SwiGLU (three dense matrices instead of two).
    """
    s = config.block_size if seq_len is None else seq_len
    d, V, h, kv_size = config.n_embd, config.vocab_size, config.n_head, config.head_size
    ffw = config.mlp_hidden
    qkv = 2 * s * d * kv_size * (h + 2 * config.n_kv_head)
    logits = 2 * s * s * kv_size * h
    softmax = 3 * h * s * s
    softmax_v = 2 * s * s * kv_size * h
    out_proj = 2 * s * kv_size * h * d
    dense = 2 * s * d * ffw * (2 if config.mlp == "gelu" else 3)
    per_layer = qkv + logits + softmax + softmax_v + out_proj + dense
    total = config.n_layer * per_layer
    if embeddings:
        total += 2 * s * V * d + 2 * s * d * V  # embeddings + final logits
    return total


def chinchilla_flops_per_token(config: GPTConfig, seq_len: int | None = None, embeddings: bool = True) -> float:
    """Appendix F training FLOPs per token: forward count x 3 (the backward pass costs twice the forward)."""
    s = config.block_size if seq_len is None else seq_len
    return 3 * chinchilla_forward_flops(config, s, embeddings) / s
