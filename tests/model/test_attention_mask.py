"""Causal vs bidirectional attention (config.attention_mask) with padding, on every backend.

The oracle is the naive backend in float64; the other backends run in fp32. Their hidden states and gradients
differ from it by fp32 rounding: a few ulp (1e-7) per operation, summed over a 2-layer model of width 64, stay
below 1e-5 of each tensor's largest entry; the checks allow 1e-4 (see tests/model/test_triton_backend.py for
why an error is measured against the tensor's scale, not entry by entry).
"""

from __future__ import annotations

import pytest
import torch

from model import GPT, preset
from model.config import ConfigError
from model.heads import hidden_states

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BACKENDS = ["naive", "sdpa", pytest.param("triton", marks=pytest.mark.kernels)]
MASKS = ["causal", "bidirectional"]
T = 16
LENGTHS = (16, 11, 5)  # real tokens per row: one full row, two padded ones


def _model(attention: str, attention_mask: str, dtype: torch.dtype = torch.float32) -> GPT:
    config = preset("debug", block_size=T, n_embd=64, attention=attention, attention_mask=attention_mask)
    return GPT(config, torch.Generator().manual_seed(0)).to(DEVICE, dtype)  # head size 16: the kernel takes it


def _batch(side: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 256, (len(LENGTHS), T), generator=g)
    pos = torch.arange(T)[None, :]
    lengths = torch.tensor(LENGTHS)[:, None]
    mask = pos < lengths if side == "right" else pos >= T - lengths  # (B, T)
    return {"input_ids": idx.to(DEVICE), "attention_mask": mask.to(DEVICE)}


def _close(a: torch.Tensor, b: torch.Tensor, name: str, rel: float = 1e-4) -> None:
    err, scale = float((a.double() - b.double()).abs().max()), float(b.abs().max())
    assert err <= rel * scale + 1e-12, f"{name}: error {err:.2e} at scale {scale:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attention_mask", MASKS)
def test_a_later_token_changes_earlier_states_only_when_bidirectional(backend: str, attention_mask: str) -> None:
    model = _model(backend, attention_mask)
    batch = _batch("right")
    changed = {**batch, "input_ids": batch["input_ids"].clone()}
    changed["input_ids"][0, 12] = (changed["input_ids"][0, 12] + 1) % 256  # row 0 has no padding
    with torch.no_grad():
        before, after = hidden_states(model, batch)[0, :12], hidden_states(model, changed)[0, :12]
    diff = float((before - after).abs().max())
    if attention_mask == "causal":
        assert diff <= 1e-6, f"position 12 leaked into earlier positions ({diff:.1e})"
    else:
        assert diff > 1e-3, "a bidirectional model must see later tokens"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attention_mask", MASKS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_leaks_into_real_tokens(backend: str, attention_mask: str, side: str) -> None:
    """Real tokens' states do not depend on what the padding holds, and equal those of the row run alone."""
    model = _model(backend, attention_mask)
    batch = _batch(side)
    mask = batch["attention_mask"]
    other = {**batch, "input_ids": torch.where(mask, batch["input_ids"], (batch["input_ids"] * 7 + 3) % 256)}
    with torch.no_grad():
        h, h_other = hidden_states(model, batch), hidden_states(model, other)
        assert float((h - h_other)[mask].abs().max()) <= 1e-6
        for row, n in enumerate(LENGTHS[1:], start=1):
            real = batch["input_ids"][row][mask[row]][None, :]  # (1, n): the row without its padding
            alone = hidden_states(model, {"input_ids": real, "attention_mask": torch.ones_like(real, dtype=torch.bool)})
            assert alone.shape[1] == n
            _close(h[row][mask[row]], alone[0], f"row {row}")


@pytest.mark.parametrize("backend", ["sdpa", pytest.param("triton", marks=pytest.mark.kernels)])
@pytest.mark.parametrize("attention_mask", MASKS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_backends_agree_with_the_float64_oracle_forward_and_backward(
    backend: str, attention_mask: str, side: str
) -> None:
    """The loss reads real tokens only; every parameter's gradient and the real states match naive float64."""
    batch = _batch(side, seed=1)
    mask = batch["attention_mask"]
    w = torch.randn(len(LENGTHS), T, 64, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    results = {}
    for name, attention, dtype in (("oracle", "naive", torch.float64), ("fast", backend, torch.float32)):
        model = _model(attention, attention_mask, dtype)
        h = hidden_states(model, batch)  # (B, T, C)
        (h * w.to(dtype))[mask].sum().backward()
        results[name] = (h.detach()[mask], {n: p.grad for n, p in model.named_parameters()})
    (h_ref, g_ref), (h_fast, g_fast) = results["oracle"], results["fast"]
    _close(h_fast, h_ref, "hidden states")
    for n, grad in g_ref.items():
        _close(g_fast[n], grad, n)


def test_a_bidirectional_model_refuses_to_generate_and_to_cache() -> None:
    model = _model("sdpa", "bidirectional")
    idx = torch.zeros(1, 3, dtype=torch.long, device=DEVICE)
    with pytest.raises(ConfigError, match="only a causal model generates"):
        model.generate(idx, 2)
    with pytest.raises(ConfigError, match="only a causal model generates"):
        model.generate(idx, 2, use_cache=False)


def test_attention_mask_is_validated() -> None:
    with pytest.raises(ConfigError, match="attention_mask='both' is not allowed"):
        preset("debug", attention_mask="both")
