"""Plain PyTorch attention: the readable reference and the test oracle for every fast path.

    S = Q K^T * scale          (B, H, Tq, Tk)
    S[i, j] = -inf  where key j lies in query i's future (causal)
    P = softmax(S, dim=-1)
    O = P V                    (B, H, Tq, D)

Legend: B batch, H query heads, Hkv key/value heads (grouped-query attention: each group of H / Hkv query
heads shares one key/value head; Ainslie et al. 2023), Tq query length, Tk key length, D head size.
When Tq < Tk (decoding with a KV cache) the queries are the *last* Tq positions, so the causal mask is aligned
bottom-right: query i may see keys j <= i + (Tk - Tq), as in FlashAttention-2.
"""

from __future__ import annotations

import math

import torch
from einops import repeat


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, T, D) -> (B, Hkv * n_rep, T, D): give every query head its key/value head. Query heads
    g * n_rep .. (g + 1) * n_rep - 1 share key/value head g."""
    if n_rep == 1:
        return x
    return repeat(x, "b hkv t d -> b (hkv rep) t d", rep=n_rep)


def causal_mask(tq: int, tk: int, device: torch.device | None = None) -> torch.Tensor:
    """(Tq, Tk) boolean, True where query i may attend key j (bottom-right aligned)."""
    i = torch.arange(tq, device=device)[:, None]
    j = torch.arange(tk, device=device)[None, :]
    return j <= i + (tk - tq)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = True,
    sm_scale: float | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention by the definition. q: (B, H, Tq, D); k, v: (B, Hkv, Tk, D) with H % Hkv == 0; key_mask:
    (B, Tk) bool, True = a real key (padded keys are hidden from every query).

    Computes in the inputs' dtype; pass float64 tensors for an oracle. A query row that can see no key at all
    (Tq > Tk, or only padding in view) gets zeros rather than NaN.
    """
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    if H % Hkv != 0:
        raise ValueError(f"query heads {H} must be a multiple of key/value heads {Hkv}")
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    k, v = repeat_kv(k, H // Hkv), repeat_kv(v, H // Hkv)
    att = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    allowed = causal_mask(Tq, Tk, q.device) if causal else torch.ones(Tq, Tk, dtype=torch.bool, device=q.device)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]  # (B, 1, Tq, Tk)
    att = att.masked_fill(~allowed, float("-inf"))
    att = torch.softmax(att, dim=-1).nan_to_num(0.0)  # fully masked rows -> zeros
    return att @ v  # (B, H, Tq, D)
