"""The pieces of a transformer block: norms, MLPs, rotary position embeddings, and the pre-norm block itself.

Legend for shape comments: B batch, T time (sequence), C channels (n_embd), H heads, D head size.
Each piece has a plain PyTorch path; where `config.fused` names it, a Triton kernel from `kernels/` replaces
that path (tested against it). The kernel modules are imported only when asked for.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import GPTConfig


class LayerNorm(nn.Module):
    """LayerNorm (Ba et al. 2016) with an optional bias (GPT-2 has one; many newer models drop it)."""

    def __init__(self, n_embd: int, bias: bool, eps: float, fused: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None
        self.eps, self.fused = eps, fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            from kernels.norms import layer_norm

            return layer_norm(x, self.weight, self.bias, self.eps)
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): rescale by the root mean square, no centring, no bias."""

    def __init__(self, n_embd: int, eps: float, fused: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.eps, self.fused = eps, fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            from kernels.norms import rms_norm

            return rms_norm(x, self.weight, self.eps)
        x32 = x.float()  # the mean square in fp32: bf16 loses too much here
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def make_norm(config: GPTConfig) -> nn.Module:
    fused = "norm" in config.fused
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps, fused)
    return LayerNorm(config.n_embd, config.bias, config.norm_eps, fused)


class MLP(nn.Module):
    """GPT-2's feed-forward: C -> 4C -> GELU (tanh approximation, as GPT-2) -> C."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020, "GLU Variants Improve Transformer"): silu(x W_g) * (x W_u), then W_d."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.c_fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.fused = "swiglu" in config.fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_gate(x), self.c_fc(x)  # (B, T, hidden) each
        if self.fused:
            from kernels.glu import swiglu

            h = swiglu(gate, up)
        else:
            h = F.silu(gate) * up
        return self.dropout(self.c_proj(h))


def make_mlp(config: GPTConfig) -> nn.Module:
    return SwiGLU(config) if config.mlp == "swiglu" else MLP(config)


# --- rotary position embeddings (Su et al. 2021, RoFormer) ---------------------------------------------------


def rope_tables(
    head_size: int, length: int, theta: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (length, head_size // 2), in fp32: angle(t, i) = t * theta^(-2i / head_size)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, device=device, dtype=torch.float64) / head_size)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """Rotate each (x_i, x_{i + D/2}) pair by its angle ("rotate-half" layout, as GPT-NeoX and LLaMA).

    x: (B, H, T, D); cos, sin: (T, D/2). Rotation makes q.k depend only on the distance between positions.
    """
    if fused:
        from kernels.rope import apply_rotary

        return apply_rotary(x, cos, sin)
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, T, D/2) each
    out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return out.to(x.dtype)


class Block(nn.Module):
    """Pre-norm residual block (GPT-2): x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig, attention: nn.Module) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = attention
        self.ln_2 = make_norm(config)
        self.mlp = make_mlp(config)

    def forward(self, x: torch.Tensor, **attn_kwargs: object) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), **attn_kwargs)
        return x + self.mlp(self.ln_2(x))


def residual_std(n_layer: int) -> float:
    """GPT-2's scaled init for the projections that write into the residual stream: 0.02 / sqrt(2 L)."""
    return 0.02 / math.sqrt(2 * n_layer)
