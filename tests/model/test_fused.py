"""The model with fused Triton kernels (config.fused) against the same model on the PyTorch path.

Runs in Triton's CPU interpreter (tests/conftest.py), so shapes are tiny.
"""

from __future__ import annotations

import pytest
import torch

from model import GPT, preset

pytestmark = pytest.mark.kernels  # skipped where Triton cannot run (tests/conftest.py)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # compiled kernels on a GPU, else interpreted


@pytest.mark.parametrize(
    ("changes", "fused"),
    [
        ({}, ("norm",)),
        ({}, ("rope",)),
        ({}, ("swiglu",)),
        ({}, ("cross_entropy",)),
        ({"norm": "layernorm", "bias": True, "mlp": "gelu", "positions": "learned"}, ("norm", "cross_entropy")),
        ({}, ("norm", "rope", "swiglu", "cross_entropy")),
    ],
    ids=["rmsnorm", "rope", "swiglu", "cross_entropy", "layernorm+ce", "all"],
)
def test_fused_kernels_match_the_pytorch_model(changes: dict, fused: tuple[str, ...]) -> None:
    config = preset("debug", block_size=16, **changes)
    plain, fast = GPT(config).to(DEVICE), GPT(config.replace(fused=fused)).to(DEVICE)
    fast.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 256, (2, 16), generator=g).to(DEVICE)
    targets = torch.randint(0, 256, (2, 16), generator=g).to(DEVICE)
    targets[0, :3] = -100  # ignored positions
    losses = []
    for model in (plain, fast):
        _, loss = model(idx, targets)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    for (name, p), (_, q) in zip(plain.named_parameters(), fast.named_parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    if "cross_entropy" in fused:
        logits, _ = fast(idx, targets)
        assert logits is None  # never materialised
    else:
        torch.testing.assert_close(fast(idx)[0], plain(idx)[0], rtol=1e-5, atol=1e-5)


def test_fused_rope_refuses_per_row_positions() -> None:
    model = GPT(preset("debug", fused=("rope",)))
    idx = torch.randint(0, 256, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    with pytest.raises(ValueError, match="fused rope"):
        model.hidden_states(idx, padding_mask=mask)
