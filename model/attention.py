"""Self-attention with grouped-query heads - causal, or bidirectional for fine-tuned encoders - and the one
seam to the attention kernels.

Backends (config.attention):
- `naive`: the explicit masked softmax below - the readable reference and the model's test oracle;
- `sdpa`:  torch's F.scaled_dot_product_attention (fused CPU/CUDA kernels chosen by PyTorch);
- `triton`: our FlashAttention-2 kernel from kernels/flash.py;
- `auto`:  triton on CUDA when it works for this shape, else sdpa; `resolve_backend` says why.
An explicitly requested backend that cannot run raises: a silent fallback would make benchmarks lie.

Legend: B batch, T query length, Tk key length (T + cached positions), C n_embd, H query heads,
Hkv key/value heads, D head size.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from kernels.reference import causal_mask, repeat_kv
from model.cache import KVCache
from model.config import BackendError, GPTConfig
from model.layers import apply_rope

TRITON_HEAD_SIZES = (16, 32, 64, 128)


def resolve_backend(config: GPTConfig, device: torch.device) -> tuple[str, str]:
    """(backend, reason): which attention implementation runs for this config on this device, and why. Also
    refuses fused kernels (config.fused) that cannot run on this device."""
    if config.fused and (problem := kernels_problem(device)):
        raise BackendError(f"fused={config.fused} cannot run: {problem}; use fused=()")
    requested = config.attention
    if requested in ("naive", "sdpa"):
        return requested, "requested"
    problem = _triton_problem(config, device)
    if requested == "triton":
        if problem:
            raise BackendError(f"attention='triton' cannot run: {problem}; use attention='sdpa' or 'auto'")
        return "triton", "requested"
    if problem is None and device.type == "cuda":
        return "triton", "auto: CUDA device and the Triton kernel supports this shape"
    return "sdpa", f"auto: {problem or 'not a CUDA device (the Triton kernel on CPU runs only interpreted)'}"


def kernels_problem(device: torch.device) -> str | None:
    """Why our Triton kernels cannot run on tensors on `device`, or None."""
    from kernels import triton_status

    usable, reason = triton_status()
    if not usable:
        return reason
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"tensors on {device.type}: the Triton kernels run on CUDA, or on the CPU under TRITON_INTERPRET=1"
    return None


def _triton_problem(config: GPTConfig, device: torch.device) -> str | None:
    if problem := kernels_problem(device):
        return problem
    if config.head_size not in TRITON_HEAD_SIZES:
        return f"head size {config.head_size} is not one of {TRITON_HEAD_SIZES}"
    if config.dropout > 0:
        return "the Triton kernel has no attention dropout (dropout must be 0)"
    try:
        import kernels.flash  # noqa: F401
    except ImportError as err:
        return f"the Triton attention kernel is not available ({err})"
    return None


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: nn.Module
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(D) masked) V, written out. mask: broadcastable to (B, H, T, Tk), True = may attend."""
    k, v = repeat_kv(k, q.shape[1] // k.shape[1]), repeat_kv(v, q.shape[1] // v.shape[1])  # (B, H, Tk, D)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, Tk)
    att = att.masked_fill(~mask, float("-inf"))
    att = torch.softmax(att.float(), dim=-1).to(q.dtype)  # softmax in fp32 for stability under autocast
    return dropout(att) @ v  # (B, H, T, D)


class SelfAttention(nn.Module):
    """Multi-head (grouped-query) self-attention; causal unless config.attention_mask is "bidirectional"."""

    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.n_kv_head, config.head_size
        self.layer_idx = layer_idx
        kv_dim = 2 * config.n_kv_head * config.head_size
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + kv_dim, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout_p = config.dropout
        self.fused_rope = "rope" in config.fused
        self.causal = config.attention_mask == "causal"  # else bidirectional: every real key, both sides

    def forward(
        self,
        x: torch.Tensor,
        backend: str,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        kv_dim = self.n_kv_head * self.head_size
        q, k, v = self.c_attn(x).split([C, kv_dim, kv_dim], dim=2)
        q = rearrange(q, "b t (h d) -> b h t d", h=self.n_head)  # (B, H, T, D): split the heads
        k = rearrange(k, "b t (h d) -> b h t d", h=self.n_kv_head)  # (B, Hkv, T, D)
        v = rearrange(v, "b t (h d) -> b h t d", h=self.n_kv_head)  # (B, Hkv, T, D)
        if rope is not None:
            q = apply_rope(q, *rope, fused=self.fused_rope)
            k = apply_rope(k, *rope, fused=self.fused_rope)
        if cache is not None:
            if not self.causal:
                raise BackendError("a KV cache is for causal decoding; this model's attention is bidirectional")
            k, v = cache.update(self.layer_idx, k, v)  # (B, Hkv, Tk, D)
        y = self._attend(q, k, v, backend, padding_mask)  # (B, H, T, D)
        y = rearrange(y, "b h t d -> b t (h d)")  # (B, T, C): merge the heads again
        return self.resid_dropout(self.c_proj(y))

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        T, Tk = q.shape[2], k.shape[2]
        if backend == "triton":
            from kernels.flash import flash_attention

            return flash_attention(q, k, v, causal=self.causal, key_mask=padding_mask)
        mask = None
        if padding_mask is not None or T != Tk or backend == "naive":
            if self.causal:
                mask = causal_mask(T, Tk, q.device)  # (T, Tk), bottom-right aligned when T < Tk
            else:
                mask = torch.ones(T, Tk, dtype=torch.bool, device=q.device)
            if padding_mask is not None:
                # (B, 1, T, Tk): real keys only; every query keeps itself so no row is empty (no NaN).
                itself = torch.arange(Tk, device=q.device)[None, :] == torch.arange(T, device=q.device)[:, None] + (
                    Tk - T
                )  # (T, Tk): query i is position i + Tk - T
                mask = mask & (padding_mask[:, None, None, :] | itself)
        if backend == "naive":
            return naive_attention(q, k, v, mask, self.attn_dropout)
        p = self.dropout_p if self.training else 0.0
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=p,
            is_causal=mask is None and self.causal,
            enable_gqa=self.n_kv_head != self.n_head,
        )
