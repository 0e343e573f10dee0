"""GPT: a decoder-only transformer (Radford et al. 2018/2019), written to be read next to nanoGPT.

    idx (B, T) -> token embedding (+ learned position embedding) -> n_layer pre-norm blocks -> final norm
               -> hidden states (B, T, C) -> LM head (tied to the token embedding by default) -> logits (B, T, V)

Variants are config values, each covered by tests: GELU or SwiGLU MLP, LayerNorm or RMSNorm, learned or
rotary positions, grouped-query attention, biases, and the attention backend (model/attention.py).
Weights are initialised as GPT-2 from an explicit torch.Generator, so the same seed gives the same model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import SelfAttention, resolve_backend
from model.cache import KVCache
from model.config import ConfigError, GPTConfig
from model.layers import Block, make_norm, residual_std, rope_tables


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        C = config.n_embd
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, C),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, SelfAttention(config, i)) for i in range(config.n_layer)]),
                ln_f=make_norm(config),
            )
        )
        if config.positions == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, C)
        else:  # rotary tables are derived, not learned: non-persistent buffers, absent from checkpoints
            cos, sin = rope_tables(config.head_size, config.block_size, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        if config.tie_embeddings:  # Press & Wolf 2017: one matrix for input and output embeddings
            self.lm_head.weight = self.transformer.wte.weight
        self.init_weights(torch.Generator().manual_seed(0) if generator is None else generator)
        self._backends: dict[str, tuple[str, str]] = {}

    # --- initialisation ---------------------------------------------------------------------------------

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> None:
        """GPT-2 init: N(0, 0.02) for weights, zeros for biases, 0.02/sqrt(2L) for residual projections."""
        resid = residual_std(self.config.n_layer)
        for name, p in self.named_parameters():  # named_parameters visits a tied weight once
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, resid, generator=generator)
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, 0.02, generator=generator)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:  # norm gains
                nn.init.ones_(p)

    def num_params(self, non_embedding: bool = False) -> int:
        """Counted from the tensors; model/flops.py gives the same numbers from the config alone."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def attention_backend(self, device: torch.device | str) -> tuple[str, str]:
        """(backend, reason) that attention uses on `device`; raises if an explicit request cannot run."""
        device = torch.device(device)
        if device.type not in self._backends:
            self._backends[device.type] = resolve_backend(self.config, device)
        return self._backends[device.type]

    # --- the forward pass, in three parts so heads and adversarial training can enter in between ---------

    def positions(
        self, idx: torch.Tensor, cache: KVCache | None = None, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Position of every token: (T,) counting from the cache's fill, or (B, T) skipping left padding."""
        B, T = idx.shape
        start = 0 if cache is None else cache.pos
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size={self.config.block_size}")
        if padding_mask is not None:
            return (padding_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        return torch.arange(start, start + T, device=idx.device)  # (T,)

    def embed(self, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Token (+ learned position) embeddings: (B, T) -> (B, T, C)."""
        x = self.transformer.wte(idx)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(pos)
        return self.transformer.drop(x)

    def backbone(
        self, x: torch.Tensor, pos: torch.Tensor, cache: KVCache | None = None, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The blocks and the final norm: embeddings (B, T, C) -> hidden states (B, T, C)."""
        backend, _ = self.attention_backend(x.device)
        rope = None
        if self.config.positions == "rope":
            cos, sin = self.rope_cos.float()[pos], self.rope_sin.float()[pos]  # (T, D/2) or (B, T, D/2)
            if pos.dim() == 2 and "rope" in self.config.fused:
                raise ValueError(
                    "the fused rope kernel takes one position per time step; a padding mask "
                    "needs fused kernels without 'rope'"
                )
            rope = (cos, sin) if pos.dim() == 1 else (cos[:, None], sin[:, None])  # (B, 1, T, D/2)
        for block in self.transformer.h:
            x = block(x, backend=backend, rope=rope, cache=cache, padding_mask=padding_mask)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.transformer.ln_f(x)

    def hidden_states(
        self, idx: torch.Tensor, cache: KVCache | None = None, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states (B, T, C), after the final norm: what fine-tuning heads read."""
        pos = self.positions(idx, cache, padding_mask)
        return self.backbone(self.embed(idx, pos), pos, cache, padding_mask)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """nanoGPT's convention: returns (logits (B, T, V), loss or None); targets of -100 are ignored.

        With the fused cross-entropy kernel and targets given, the logits are never materialised and the
        first element is None. Unlike nanoGPT, logits come back for every position, not only the last.
        """
        h = self.hidden_states(idx, cache, padding_mask)  # (B, T, C)
        if targets is not None and "cross_entropy" in self.config.fused:
            from kernels.cross_entropy import fused_linear_cross_entropy

            loss = fused_linear_cross_entropy(h.flatten(0, 1), self.lm_head.weight, targets.flatten())
            return None, loss
        logits = self.lm_head(h)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    # --- generation (model/generate.py holds the sampling logic) -----------------------------------------

    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        stop_token: int | None = None,
    ) -> torch.Tensor:
        """Continue `idx` (B, T) by up to `max_new_tokens`; temperature 0 is greedy. Returns (B, T + new)."""
        new = list(self.stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator, stop_token))
        return torch.cat([idx, *new], dim=1) if new else idx

    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        stop_token: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Like `generate`, but yields each new (B, 1) token as soon as it is sampled."""
        from model.generate import stream_tokens

        if self.config.attention_mask != "causal":  # each token would have seen its successors in training
            raise ConfigError(f"attention_mask={self.config.attention_mask!r}: only a causal model generates text")

        return stream_tokens(self, idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator, stop_token)
