"""GPTConfig: the model's shape and choices as one frozen, validated dataclass, plus named presets.

Every field is checked on construction; an error names the field and the values it may take, so a typo in a
plan file or on the command line fails at once instead of deep inside a forward pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MLP_KINDS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
ATTENTION_BACKENDS = ("auto", "naive", "sdpa", "triton")
# Which keys a token attends to: causal (a language model) or bidirectional (every real token of the sequence:
# a fine-tuned encoder for classification and tagging; Li et al. 2023, "Label Supervised LLaMA", arXiv 2310.01208)
ATTENTION_MASKS = ("causal", "bidirectional")
# Fused Triton kernels (kernels/) that can replace a PyTorch piece of the model, each tested against it.
FUSED_KERNELS = ("norm", "rope", "swiglu", "cross_entropy")
# The data a task head trains on (model/heads.py), and the perturbations of the embedding output
# (model/adversarial.py): named here so that configs can check them without importing torch.
TASKS = ("classify", "tag", "generate", "regress")
ATTACKS = ("fgm", "pgd")


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field and what is allowed."""


class BackendError(RuntimeError):
    """The requested attention backend (or fused kernel) cannot run here; the message says why and what would.
    Raised by model/attention.py and model/layers.py; defined here so that callers can catch it without torch."""


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: expected {allowed}")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None  # grouped-query attention; None means n_head (plain multi-head attention)
    mlp: str = "gelu"  # gelu: 4x hidden; swiglu: ~8/3 x hidden rounded up to a multiple of 64
    norm: str = "layernorm"
    positions: str = "learned"
    rope_theta: float = 10000.0
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True
    attention: str = "auto"
    attention_mask: str = "causal"  # bidirectional only for fine-tuned classifiers and taggers
    fused: tuple[str, ...] = field(default=())  # subset of FUSED_KERNELS
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, name, value, "a positive integer")
        if self.n_kv_head is None:
            object.__setattr__(self, "n_kv_head", self.n_head)
        kv = self.n_kv_head
        _check(
            isinstance(kv, int) and kv >= 1 and self.n_head % kv == 0,
            "n_kv_head",
            kv,
            f"a positive divisor of n_head={self.n_head}",
        )
        _check(self.n_embd % self.n_head == 0, "n_embd", self.n_embd, f"a multiple of n_head={self.n_head}")
        _check(self.mlp in MLP_KINDS, "mlp", self.mlp, f"one of {MLP_KINDS}")
        _check(self.norm in NORMS, "norm", self.norm, f"one of {NORMS}")
        _check(self.positions in POSITIONS, "positions", self.positions, f"one of {POSITIONS}")
        _check(self.attention in ATTENTION_BACKENDS, "attention", self.attention, f"one of {ATTENTION_BACKENDS}")
        _check(
            self.attention_mask in ATTENTION_MASKS, "attention_mask", self.attention_mask, f"one of {ATTENTION_MASKS}"
        )
        _check(self.rope_theta > 0, "rope_theta", self.rope_theta, "a positive number")
        if self.positions == "rope":
            _check(self.head_size % 2 == 0, "n_embd", self.n_embd, "n_embd / n_head even for rotary positions")
        _check(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "a number in [0, 1)")
        _check(self.norm_eps > 0, "norm_eps", self.norm_eps, "a positive number")
        fused = tuple(self.fused)
        object.__setattr__(self, "fused", fused)
        bad = [k for k in fused if k not in FUSED_KERNELS]
        _check(not bad, "fused", fused, f"a subset of {FUSED_KERNELS}")
        if "rope" in fused:
            _check(self.positions == "rope", "fused", fused, "'rope' only with positions='rope'")
        if "swiglu" in fused:
            _check(self.mlp == "swiglu", "fused", fused, "'swiglu' only with mlp='swiglu'")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        if self.mlp == "gelu":
            return 4 * self.n_embd
        # SwiGLU (Shazeer 2020): three matrices instead of two, so ~2/3 of 4x keeps the parameter count.
        return 64 * -(-(8 * self.n_embd // 3) // 64)

    def replace(self, **changes: Any) -> GPTConfig:
        """A copy with `changes`; a multi-head config given a new n_head stays multi-head."""
        if "n_head" in changes and "n_kv_head" not in changes and self.n_kv_head == self.n_head:
            changes["n_kv_head"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fused"] = list(self.fused)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown GPTConfig field(s) {unknown}: expected some of {sorted(known)}")
        d = dict(d)
        if "fused" in d:
            d["fused"] = tuple(d["fused"])
        return cls(**d)


PRESETS: dict[str, GPTConfig] = {
    # A model small enough for unit tests: a forward pass in milliseconds on a CPU.
    "debug": GPTConfig(
        vocab_size=256,
        block_size=32,
        n_layer=2,
        n_head=4,
        n_embd=32,
        n_kv_head=2,
        mlp="swiglu",
        norm="rmsnorm",
        positions="rope",
        bias=False,
    ),
    # nanoGPT's "baby GPT" for character-level Shakespeare on a CPU.
    "baby": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # A modern small model: RoPE, RMSNorm, SwiGLU, GQA, no biases.
    "small": GPTConfig(
        vocab_size=8192,
        block_size=512,
        n_layer=6,
        n_head=6,
        n_embd=384,
        n_kv_head=2,
        mlp="swiglu",
        norm="rmsnorm",
        positions="rope",
        bias=False,
    ),
    # GPT-2 124M (Radford et al. 2019): exactly 124,439,808 parameters with the 50257-token vocabulary.
    "gpt2": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": GPTConfig(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024),
}


# The block a plan builds (`--arch`): GPT-2's (Radford et al. 2019: learned positions, LayerNorm, GELU MLP,
# biases) or the modern one of LLaMA (Touvron et al. 2023) and modded-nanogpt's speedrun: rotary positions (Su et
# al. 2021), RMSNorm (Zhang & Sennrich 2019), SwiGLU (Shazeer 2020), no biases. Measured side by side on
# tinyshakespeare (README, "time to quality"), the modern block reaches a loss sooner; GPT-2's stays one flag away.
ARCHS: dict[str, dict[str, Any]] = {
    "gpt2": {"mlp": "gelu", "norm": "layernorm", "positions": "learned", "bias": True},
    "modern": {"mlp": "swiglu", "norm": "rmsnorm", "positions": "rope", "bias": False},
}
DEFAULT_ARCH = "modern"


def arch(name: str) -> GPTConfig:
    """GPTConfig() with the named block's fields: the `arch` a plan is shaped from (train/planner/shapes.py)."""
    if name not in ARCHS:
        raise ConfigError(f"arch={name!r} is not known: expected one of {sorted(ARCHS)}")
    return GPTConfig(**ARCHS[name])


def arch_of(config: GPTConfig) -> str | None:
    """The name of the block `config` uses, or None for a mix of the two."""
    for name, fields in ARCHS.items():
        if all(getattr(config, k) == v for k, v in fields.items()):
            return name
    return None


def preset(name: str, **overrides: Any) -> GPTConfig:
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is not known: expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
