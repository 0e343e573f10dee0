"""Generation: greedy parity with and without the KV cache, sampling filters, streaming, stop tokens."""

from __future__ import annotations

import pytest
import torch

from model import GPT, preset
from model.cache import KVCache
from model.generate import filter_logits


def _model(**changes: object) -> GPT:
    return GPT(preset("debug", **changes), torch.Generator().manual_seed(1))


def _prompt(B: int = 2, T: int = 5) -> torch.Tensor:
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize(
    "changes",
    [{}, {"positions": "learned"}, {"n_kv_head": 1}, {"attention": "naive"}],
    ids=["rope-gqa", "learned", "mqa", "naive"],
)
def test_greedy_with_cache_equals_recomputing_the_context(changes: dict) -> None:
    model = _model(**changes)
    # 40 new tokens from a 5-token prompt crosses block_size=32, so the sliding window is covered too.
    a = model.generate(_prompt(), 40, temperature=0.0, use_cache=True)
    b = model.generate(_prompt(), 40, temperature=0.0, use_cache=False)
    assert a.shape == (2, 45)
    assert torch.equal(a, b)


def test_cached_logits_match_full_forward() -> None:
    model = _model().eval()
    idx = _prompt(T=12)
    full, _ = model(idx)
    cache = KVCache(model.config, batch_size=2)
    first, _ = model(idx[:, :7], cache=cache)
    steps = [model(idx[:, t : t + 1], cache=cache)[0] for t in range(7, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.pos == 12 and cache.k[0].shape == (2, 2, 32, 8)  # n_kv_head=2, not n_head=4


def test_sampling_is_reproducible_with_a_generator_and_streams() -> None:
    model = _model()
    gen = lambda seed: model.generate(
        _prompt(), 10, temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(seed)
    )
    assert torch.equal(gen(3), gen(3))
    assert not torch.equal(gen(3), gen(4))
    streamed = list(model.stream(_prompt(), 10, temperature=0.8, top_k=20, generator=torch.Generator().manual_seed(3)))
    assert len(streamed) == 10 and all(t.shape == (2, 1) for t in streamed)
    assert torch.equal(torch.cat([_prompt(), *streamed], dim=1), gen(3))


def test_top_k_and_top_p_filters() -> None:
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[True, False, False, True]]
    probs = torch.softmax(logits, -1)[0]  # ~[0.03, 0.64, 0.24, 0.09]
    kept = ~torch.isinf(filter_logits(logits, None, 0.7))
    assert kept.tolist() == [[False, True, True, False]]  # 0.64 < 0.7, so the second token is needed too
    assert probs[1] < 0.7 < probs[1] + probs[2]
    assert (~torch.isinf(filter_logits(logits, None, 0.5))).sum() == 1  # always at least the top token
    model = _model()
    for _ in range(3):
        out = model.generate(_prompt(), 5, temperature=1.0, top_k=1)
        assert torch.equal(out, model.generate(_prompt(), 5, temperature=0.0))


def test_stop_token_ends_generation_and_pads_finished_rows() -> None:
    model = _model()
    greedy = model.generate(_prompt(B=1), 6, temperature=0.0)
    stop = int(greedy[0, 5 + 2])  # the third generated token
    out = model.generate(_prompt(B=1), 6, temperature=0.0, stop_token=stop)
    first = (greedy[0, 5:] == stop).nonzero()[0].item()
    assert out.shape[1] == 5 + first + 1 and out[0, -1] == stop


def test_bad_sampling_arguments() -> None:
    model = _model()
    with pytest.raises(ValueError, match="temperature"):
        model.generate(_prompt(), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(_prompt(), 2, top_p=1.5)
