"""The model's `triton` attention backend (our FlashAttention-2 kernel, in Triton's CPU interpreter here)
against `sdpa`: the same forward, and the same losses over a few training steps of the debug model."""

from __future__ import annotations

import pytest
import torch

from model import GPT, preset

pytestmark = pytest.mark.kernels  # skipped where Triton cannot run (tests/conftest.py)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # compiled kernels on a GPU, else interpreted


def _train(attention: str, steps: int = 3) -> tuple[list[float], GPT]:
    config = preset("debug", block_size=16, n_embd=64, attention=attention)  # head size 16
    model = GPT(config, torch.Generator().manual_seed(0)).to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, 256, (2, 16), generator=g).to(DEVICE)
        _, loss = model(idx, torch.roll(idx, -1, dims=1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model


def test_a_few_training_steps_with_triton_match_sdpa() -> None:
    triton_losses, triton_model = _train("triton")
    sdpa_losses, sdpa_model = _train("sdpa")
    assert triton_model.attention_backend(DEVICE)[0] == "triton"
    for a, b in zip(triton_losses, sdpa_losses, strict=True):
        assert abs(a - b) < 1e-5
    for p, q in zip(triton_model.parameters(), sdpa_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)  # Adam amplifies 1e-7 grad noise


def test_triton_backend_decodes_with_the_kv_cache() -> None:
    model = GPT(preset("debug", n_embd=64, attention="triton"), torch.Generator().manual_seed(2)).to(DEVICE)
    prompt = torch.randint(0, 256, (1, 4), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    cached = model.generate(prompt, 6, temperature=0.0, use_cache=True)
    reference = GPT(preset("debug", n_embd=64, attention="sdpa"), torch.Generator().manual_seed(2)).to(DEVICE)
    assert torch.equal(cached, reference.generate(prompt, 6, temperature=0.0, use_cache=False))


def test_the_model_compiles_with_the_kernel_in_one_graph() -> None:
    """torch.compile(fullgraph=True) of the whole model: the custom op is one opaque node, no graph break."""
    torch._dynamo.reset()
    config = preset("debug", block_size=16, n_embd=64, attention="triton")
    eager = GPT(config, torch.Generator().manual_seed(0)).to(DEVICE)
    compiled = GPT(config, torch.Generator().manual_seed(0)).to(DEVICE)
    idx = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    loss = eager(idx, torch.roll(idx, -1, dims=1))[1]
    traced = torch.compile(compiled, backend="aot_eager", fullgraph=True)(idx, torch.roll(idx, -1, dims=1))[1]
    loss.backward()
    traced.backward()
    torch.testing.assert_close(traced, loss)
    for p, q in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6)
