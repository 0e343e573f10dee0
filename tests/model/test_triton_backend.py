"""The model's `triton` attention backend (our FlashAttention-2 kernel, in Triton's CPU interpreter here)
against `sdpa`: the same forward, and the same losses over a few training steps of the debug model."""

from __future__ import annotations

import pytest
import torch

from model import GPT, preset

pytestmark = pytest.mark.kernels  # skipped where Triton cannot run (tests/conftest.py)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # compiled kernels on a GPU, else interpreted


def _train(attention: str, steps: int) -> tuple[list[float], list[dict[str, torch.Tensor]], GPT]:
    """Losses, the gradients of every step, and the model after `steps` steps of plain SGD."""
    config = preset("debug", block_size=16, n_embd=64, attention=attention)  # head size 16
    model = GPT(config, torch.Generator().manual_seed(0)).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    losses, grads = [], []
    for _ in range(steps):
        idx = torch.randint(0, 256, (2, 16), generator=g).to(DEVICE)
        _, loss = model(idx, torch.roll(idx, -1, dims=1))
        opt.zero_grad()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        opt.step()
        losses.append(loss.item())
    return losses, grads, model


def _close(a: torch.Tensor, b: torch.Tensor, rel: float, name: str) -> None:
    """|a - b| <= rel x the largest |b| of the tensor: rounding differences scale with a tensor's largest
    entries (a sum's error is relative to its biggest terms), not with each entry, which may be a near-cancelled
    sum of much bigger ones."""
    scale = float(b.abs().max())
    assert float((a - b).abs().max()) <= rel * scale + 1e-12, name


def test_a_few_training_steps_with_triton_match_sdpa() -> None:
    """The kernel and SDPA differ only in rounding: fp32 sums in another order (tiles, online softmax), about
    sqrt(T * D) = 16 ulp (1e-6) of the largest terms per attention output; a few layers of backward keep that
    order. The checks allow 1e-4 of each gradient tensor's scale (100x margin) and compare what stays that
    well-conditioned: each step's gradients and losses under SGD, where an update is lr x gradient. Weights
    after Adam steps are not: Adam's update g / sqrt(v) is about lr x sign(g) in its first steps, so rounding
    noise in a gradient entry that is nearly zero becomes a full-size step (2e-4 apart on some CPUs)."""
    triton_losses, triton_grads, triton_model = _train("triton", steps=3)
    sdpa_losses, sdpa_grads, sdpa_model = _train("sdpa", steps=3)
    assert triton_model.attention_backend(DEVICE)[0] == "triton"
    for a, b in zip(triton_losses, sdpa_losses, strict=True):
        assert abs(a - b) <= 1e-5 * abs(b)
    for step, (ga, gb) in enumerate(zip(triton_grads, sdpa_grads, strict=True)):
        for name in gb:
            _close(ga[name], gb[name], 1e-4, f"step {step + 1}: {name}")
    for (name, p), (_, q) in zip(triton_model.named_parameters(), sdpa_model.named_parameters(), strict=True):
        assert float((p - q).abs().max()) <= 1e-5, name  # 3 steps x lr 0.1 x (1e-4 x gradient scale ~1e-2)


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
