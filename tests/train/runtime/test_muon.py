"""Muon (train/runtime/muon.py): Newton-Schulz against a float64 SVD, the update against a plain float64
re-derivation, the AdamW half against torch.optim.AdamW, resume exactness, the parameter split on this GPT,
and a tiny GPT that learns with it."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import torch

from model import GPT, preset
from model.heads import ClassifyHead, TaskModel
from train.runtime.muon import NS_COEFFICIENTS, Muon, MuonWithAdamW, newton_schulz, split_for_muon
from train.runtime.optim import set_lr


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These matrices are far too small for intra-op threads; on a busy 2-core machine two OpenMP threads spin on
    each other and this file took 68 s instead of 5 s. One thread here, the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _quintic(x: torch.Tensor, steps: int) -> torch.Tensor:
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


def _matrix(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Random (rows, cols) with singular values spread log-uniformly over 1 .. 0.05 (a gradient-like spread)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    r = min(rows, cols)
    S = torch.logspace(0, -1.3, r, dtype=torch.float64)
    return U[:, :r] @ torch.diag(S) @ V[:, :r].T


# --- newton_schulz ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 24), (24, 80), (48, 48)], ids=["tall", "wide", "square"])
def test_newton_schulz_is_about_uv_t_with_singular_values_in_the_quintics_band(shape: tuple[int, int]) -> None:
    G = _matrix(*shape, seed=sum(shape))
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    assert S.min() / G.norm() >= 0.002  # the band below holds from this relative size up (see newton_schulz)
    orth = newton_schulz(G.float()).double()
    assert orth.shape == G.shape
    # Each step maps every singular value s to p(s) = a s + b s^3 + c s^5 and keeps U, V: so the singular
    # values are exactly p applied 5 times to S / ||G||_F (p is not monotone: compare them sorted).
    s = torch.linalg.svdvals(orth)
    torch.testing.assert_close(s, _quintic(S / G.norm(), 5).sort(descending=True).values, atol=2e-4, rtol=0)
    # p's largest value on [0, 1.2] is 1.2024 (at 0.55) and p maps [0.68, 1.2024] into itself (p(1) = 0.701 is
    # the low end); 5 steps of slope up to a = 3.44 lift every s >= 0.002 into it. [0.6, 1.25] adds a margin.
    assert 0.6 <= s.min() and s.max() <= 1.25
    UVt = U @ Vh
    cosine = (orth * UVt).sum() / (orth.norm() * UVt.norm())
    assert cosine > 0.95  # >= 0.96 for any spectrum inside the band


def test_newton_schulz_keeps_the_dtype_and_refuses_a_vector() -> None:
    G = torch.randn(8, 4, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0))
    assert newton_schulz(G).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"\(8,\)"):
        newton_schulz(torch.ones(8))


# --- Muon against a plain float64 re-derivation -----------------------------------------------------------


def _reference_muon(
    W: torch.Tensor, grads: list[torch.Tensor], lr: float, mu: float, nesterov: bool, wd: float
) -> torch.Tensor:
    """Muon written out in float64, its own Newton-Schulz loop included."""
    a, b, c = NS_COEFFICIENTS
    W, buf = W.double().clone(), torch.zeros_like(W, dtype=torch.float64)
    for g in grads:
        g = g.double()
        buf = mu * buf + g
        M = g + mu * buf if nesterov else buf
        X = M / (torch.linalg.matrix_norm(M) + 1e-7)
        X = X.T if M.shape[0] > M.shape[1] else X
        for _ in range(5):
            X = a * X + (b * (X @ X.T) + c * (X @ X.T) @ (X @ X.T)) @ X
        X = X.T if M.shape[0] > M.shape[1] else X
        W = W * (1 - lr * wd) - lr * max(1.0, W.shape[0] / W.shape[1]) ** 0.5 * X
    return W


@pytest.mark.parametrize(("shape", "nesterov"), [((48, 16), True), ((16, 40), True), ((48, 16), False)])
def test_muon_steps_match_the_float64_reference(shape: tuple[int, int], nesterov: bool) -> None:
    g = torch.Generator().manual_seed(1)
    W0 = torch.randn(shape, generator=g)
    grads = [torch.randn(shape, generator=g) for _ in range(3)]  # three steps: the momentum buffer matters
    p = torch.nn.Parameter(W0.clone())
    opt = Muon([p], lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.3)
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    expected = _reference_muon(W0, grads, 0.05, 0.9, nesterov, 0.3)
    assert (p.detach().double() - W0.double()).abs().max() > 0.05  # it moved: the comparison is not vacuous
    torch.testing.assert_close(p.detach().double(), expected, atol=2e-5, rtol=0)


def test_muon_keeps_extra_group_keys_and_refuses_a_vector_naming_its_shape() -> None:
    W = torch.nn.Parameter(torch.zeros(4, 3))
    opt = Muon([{"params": [W], "lr_scale": 7.0, "lr": 0.1}])
    assert opt.param_groups[0]["lr_scale"] == 7.0 and opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        Muon([torch.nn.Parameter(torch.zeros(5))])
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        MuonWithAdamW([torch.nn.Parameter(torch.zeros(5))], [], lr=1e-3)


# --- MuonWithAdamW ----------------------------------------------------------------------------------------


def test_adamw_groups_match_torch_adamw_exactly_and_set_lr_scales_muon() -> None:
    g = torch.Generator().manual_seed(2)
    plain = [torch.randn(16, generator=g), torch.randn(10, 6, generator=g), torch.randn(6, generator=g)]
    ours = [torch.nn.Parameter(t.clone()) for t in plain]
    theirs = [torch.nn.Parameter(t.clone()) for t in plain]
    matrix = torch.nn.Parameter(torch.randn(8, 8, generator=g))

    def groups(ps: list[torch.nn.Parameter]) -> list[dict]:
        return [{"params": ps[:2], "weight_decay": 0.1, "lr_scale": 1.0}, {"params": ps[2:], "weight_decay": 0.0}]

    opt = MuonWithAdamW([matrix], groups(ours), lr=1e-2, muon_lr_ratio=10.0)
    ref = torch.optim.AdamW(groups(theirs), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for step in range(5):
        lr = 1e-2 * (step + 1) / 5  # a changing schedule, set as the loop sets it
        set_lr(opt, lr)
        set_lr(ref, lr)
        assert [grp["lr"] for grp in opt.param_groups] == pytest.approx([10 * lr, lr, lr])  # Muon's group first
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        matrix.grad = torch.randn(8, 8, generator=g)
        opt.step()
        ref.step()
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)


def _tiny_gpt(seed: int = 0) -> GPT:
    return GPT(preset("debug"), torch.Generator().manual_seed(seed))


def _optimizer(model: GPT, muon_lr_ratio: float = 10.0) -> MuonWithAdamW:
    muon, adamw = split_for_muon(model.named_parameters())
    return MuonWithAdamW(
        muon, [{"params": adamw, "weight_decay": 0.0}], lr=1.0, muon_lr_ratio=muon_lr_ratio, weight_decay=0.1
    )


def _learnable_batch(vocab: int = 256, B: int = 8, T: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences that follow a fixed random permutation: token t+1 = perm[token t], so next tokens are learnable."""
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(vocab, generator=g)
    seq = [torch.randint(0, vocab, (B,), generator=g)]
    for _ in range(T):
        seq.append(perm[seq[-1]])
    x = torch.stack(seq, dim=1)  # (B, T + 1)
    return x[:, :-1], x[:, 1:]


def _train(model: GPT, opt: torch.optim.Optimizer, steps: int, lr: float = 2e-3) -> list[float]:
    idx, targets = _learnable_batch()
    losses = []
    for _ in range(steps):
        set_lr(opt, lr)
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_state_dict_round_trip_resumes_exactly() -> None:
    model = _tiny_gpt()
    opt = _optimizer(model)
    _train(model, opt, 3)
    buffer = io.BytesIO()  # as a checkpoint would: serialised, loaded weights-only
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    _train(model, opt, 3)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed, fresh = _tiny_gpt(seed=9), _tiny_gpt(seed=9)
    resumed.load_state_dict(saved["model"])
    fresh.load_state_dict(saved["model"])
    resumed_opt = _optimizer(resumed)
    resumed_opt.load_state_dict(saved["optimizer"])
    assert [g["muon"] for g in resumed_opt.param_groups] == [True, False]
    _train(resumed, resumed_opt, 3)
    _train(fresh, _optimizer(fresh), 3)  # without the state: momentum and moments start over
    for (name, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(model.transformer.h[0].attn.c_attn.weight, fresh.transformer.h[0].attn.c_attn.weight)
    assert not torch.equal(model.transformer.wte.weight, fresh.transformer.wte.weight)


def test_split_puts_block_matrices_in_muon_and_embeddings_heads_norms_in_adamw() -> None:
    block_matrices = {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_gate.weight", "mlp.c_fc.weight"}
    block_matrices |= {"mlp.c_proj.weight"}

    def split_names(model: torch.nn.Module) -> tuple[set[str], set[str]]:
        named = list(model.named_parameters())
        muon, adamw = split_for_muon(named)
        ids = {id(p) for p in muon}
        trainable = [p for _, p in named if p.requires_grad]
        assert len(muon) + len(adamw) == len(trainable) and not ids & {id(p) for p in adamw}
        rest = {id(p) for p in adamw}
        return {n for n, p in named if id(p) in ids}, {n for n, p in named if id(p) in rest}

    muon, adamw = split_names(_tiny_gpt())  # debug: tied embeddings, rotary positions, RMSNorm, no biases
    assert muon == {f"transformer.h.{i}.{m}" for i in range(2) for m in block_matrices}
    assert adamw == {"transformer.wte.weight", "transformer.ln_f.weight"} | {
        f"transformer.h.{i}.ln_{j}.weight" for i in range(2) for j in (1, 2)
    }

    untied = GPT(preset("debug", tie_embeddings=False, positions="learned", bias=True, norm="layernorm"))
    muon, adamw = split_names(untied)
    assert muon == {f"transformer.h.{i}.{m}" for i in range(2) for m in block_matrices}
    assert {"lm_head.weight", "transformer.wpe.weight", "transformer.h.0.mlp.c_fc.bias"} <= adamw

    task = TaskModel(_tiny_gpt(), ClassifyHead(preset("debug"), num_labels=3))  # fine-tuning: a new head
    task.backbone.transformer.h[1].mlp.c_fc.weight.requires_grad_(False)
    muon, adamw = split_names(task)
    assert "head.score.weight" in adamw and "backbone.transformer.h.0.mlp.c_fc.weight" in muon
    assert "backbone.transformer.h.1.mlp.c_fc.weight" not in muon | adamw  # frozen: left out


def test_a_tiny_gpt_learns_with_muon_and_adamw() -> None:
    model = _tiny_gpt()
    losses = _train(model, _optimizer(model), 60, lr=5e-3)
    assert losses[0] > 5.0  # about ln(256) = 5.55 at the start
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    # The embeddings alone can learn a permutation; the block matrices must carry their share: the same run with
    # Muon's learning rate at zero ends far higher (about 1.4 against 0.1 on this seed).
    still = _tiny_gpt()
    assert losses[-1] < 0.5 * _train(still, _optimizer(still, muon_lr_ratio=0.0), 60, lr=5e-3)[-1]
