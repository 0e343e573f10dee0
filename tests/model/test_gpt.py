"""The GPT forward pass: causality per backend, backend parity, GQA, RoPE, init and a small overfit."""

from __future__ import annotations

import pytest
import torch

from model import GPT, GPTConfig, preset
from model.attention import BackendError
from model.layers import apply_rope, rope_tables

BACKENDS = ["naive", "sdpa"]


def tiny(**changes: object) -> GPTConfig:
    return preset("debug", **changes)


def _tokens(B: int = 2, T: int = 16, V: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_changing_a_future_token_leaves_the_past_unchanged(backend: str, positions: str) -> None:
    model = GPT(tiny(attention=backend, positions=positions)).eval()
    idx = _tokens()
    t = 9
    changed = idx.clone()
    changed[:, t + 1] = (changed[:, t + 1] + 1) % 256
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize(
    "config",
    [tiny(), tiny(n_kv_head=1), tiny(n_kv_head=4, mlp="gelu", norm="layernorm"), preset("baby", vocab_size=256)],
    ids=["gqa2", "mqa", "mha", "baby"],
)
def test_naive_and_sdpa_agree_forward_and_backward(config: GPTConfig) -> None:
    idx, targets = _tokens(T=20), _tokens(T=20, seed=1)
    results = []
    for backend in BACKENDS:
        model = GPT(config.replace(attention=backend, block_size=32))
        logits, loss = model(idx, targets)
        loss.backward()
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (la, ga), (lb, gb) = results
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-5)
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6, msg=name)


def test_grouped_query_attention_equals_mha_with_repeated_kv_heads() -> None:
    """GQA with Hkv heads is MHA whose key/value weights repeat each kv head over its query group."""
    gqa = GPT(tiny(n_kv_head=2, attention="naive")).eval()
    mha = GPT(tiny(n_kv_head=4, attention="naive")).eval()
    sd = gqa.state_dict()
    C, hs = 32, 8
    for i in range(2):
        w = sd[f"transformer.h.{i}.attn.c_attn.weight"]  # (C + 2*2*hs, C)
        q, k, v = w.split([C, 2 * hs, 2 * hs])
        rep = lambda t: t.view(2, hs, C).repeat_interleave(2, dim=0).reshape(4 * hs, C)
        sd[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([q, rep(k), rep(v)])
    mha.load_state_dict(sd)
    idx = _tokens()
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=1e-5, atol=1e-5)


def test_rope_scores_depend_only_on_relative_position() -> None:
    D = 16
    cos, sin = rope_tables(D, 64, 10000.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, D, generator=g), torch.randn(1, 1, 1, D, generator=g)

    def score(m: int, n: int) -> torch.Tensor:
        qm = apply_rope(q, cos[m : m + 1], sin[m : m + 1])
        kn = apply_rope(k, cos[n : n + 1], sin[n : n + 1])
        return (qm * kn).sum()

    torch.testing.assert_close(score(5, 2), score(40, 37), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(score(9, 9), (q * k).sum(), rtol=1e-5, atol=1e-5)  # distance 0: plain dot
    assert not torch.allclose(score(5, 2), score(5, 4))
    assert torch.allclose(apply_rope(q, cos[7:8], sin[7:8]).norm(), q.norm())  # a rotation keeps the norm


def test_init_is_gpt2_and_reproducible_from_the_generator() -> None:
    config = preset("baby", vocab_size=1000, n_layer=6)
    a = GPT(config, torch.Generator().manual_seed(3))
    b = GPT(config, torch.Generator().manual_seed(3))
    c = GPT(config, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert a.lm_head.weight is a.transformer.wte.weight  # tied
    assert abs(a.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002
    assert abs(a.transformer.h[0].attn.c_proj.weight.std().item() - 0.02 / (12**0.5)) < 0.0007
    assert torch.all(a.transformer.h[0].attn.c_attn.bias == 0)


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = GPT(tiny(attention="sdpa"))
    idx, targets = _tokens(B=4, T=32), _tokens(B=4, T=32, seed=5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        _, loss = model(idx, targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 5.0 and loss.item() < 0.2


def test_initial_loss_is_about_log_vocab() -> None:
    model = GPT(tiny())
    _, loss = model(_tokens(B=8, T=32), _tokens(B=8, T=32, seed=9))
    assert abs(loss.item() - torch.log(torch.tensor(256.0)).item()) < 0.1


def test_hidden_states_feed_the_lm_head() -> None:
    model = GPT(tiny()).eval()
    idx = _tokens()
    h = model.hidden_states(idx)
    assert h.shape == (2, 16, 32)
    torch.testing.assert_close(model.lm_head(h), model(idx)[0])


def test_left_padding_gives_the_same_states_as_no_padding() -> None:
    for positions in ("learned", "rope"):
        model = GPT(tiny(positions=positions, attention="sdpa")).eval()
        idx = _tokens(B=1, T=10)
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), idx], dim=1)
        mask = torch.cat([torch.zeros(1, 3, dtype=torch.bool), torch.ones(1, 10, dtype=torch.bool)], dim=1)
        torch.testing.assert_close(
            model.hidden_states(padded, padding_mask=mask)[:, 3:], model.hidden_states(idx), rtol=1e-5, atol=1e-5
        )


def test_too_long_input_and_unusable_backend_raise() -> None:
    model = GPT(tiny())
    with pytest.raises(ValueError, match="exceeds block_size=32"):
        model(_tokens(T=33))
    triton_model = GPT(tiny(attention="triton", dropout=0.1))
    with pytest.raises(BackendError, match="attention='triton' cannot run"):
        triton_model(_tokens())


def test_triton_on_cpu_tensors_of_a_gpu_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GPU present, Triton compiles for it: CPU tensors need the interpreter, else a clear refusal."""
    import kernels

    monkeypatch.setattr(kernels, "triton_status", lambda: (True, "CUDA device NVIDIA H200"))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="tensors on cpu: the Triton kernels run on CUDA"):
        GPT(tiny(attention="triton"))(_tokens())
    assert GPT(tiny(attention="auto")).attention_backend("cpu")[0] == "sdpa"
    with pytest.raises(BackendError, match=r"fused=\('norm',\) cannot run: tensors on cpu"):
        GPT(tiny(attention="sdpa", fused=("norm",)))(_tokens())
