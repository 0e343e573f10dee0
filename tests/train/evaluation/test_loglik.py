"""The prompt scorer against its reference: batched, padded, prefix-cached log-likelihoods equal one plain forward
pass per prompt + continuation (float64, so the only difference is summation order); and the context /
continuation boundary encoded as lm-evaluation-harness encodes it."""

from __future__ import annotations

import random

import pytest
import torch

from model import GPT, preset
from model.cache import KVCache
from tests.train.evaluation.conftest import Sentiment
from train.data.tokenizer import train_tokenizer
from train.evaluation.fewshot import encode_pair
from train.evaluation.loglik import Request, score_groups, score_groups_reference, shared_prefix
from train.evaluation.prompt import PromptConfig, evaluate_prompts, read_prompt_data
from train.runs import load_language_model

V = 50


def _groups(seed: int, n: int, inputs: int, words: int) -> list[list[Request]]:
    """n groups shaped like prompting's: [eot] + demonstrations, then `inputs` different endings (the input and
    content-free ones), each followed by `words` continuations of 1-3 tokens; lengths vary from group to group."""
    rng = random.Random(seed)
    groups = []
    for _ in range(n):
        demos = [rng.randrange(V) for _ in range(rng.randrange(0, 20))]
        group = []
        for i in range(inputs):
            context = [V - 1, *demos, *(rng.randrange(V) for _ in range(rng.randrange(int(i == 0), 8)))]
            for _ in range(words):
                continuation = [rng.randrange(V) for _ in range(rng.randrange(1, 4))]
                group.append(Request(tuple(context + continuation), len(context)))
        groups.append(group)
    return groups


@pytest.mark.parametrize(
    "changes", [{}, {"positions": "learned", "norm": "layernorm", "bias": True}, {"attention": "naive"}]
)
@pytest.mark.parametrize("inputs, batch_size", [(1, 3), (4, 2), (4, 16)])
def test_cached_batched_scores_equal_the_reference(changes: dict, inputs: int, batch_size: int) -> None:
    model = GPT(preset("debug", vocab_size=V, block_size=40, **changes), torch.Generator().manual_seed(2))
    model = model.double().eval()
    groups = _groups(seed=inputs, n=7, inputs=inputs, words=3)
    fast = torch.tensor(score_groups(model, groups, batch_size))
    reference = torch.tensor(score_groups_reference(model, groups))
    assert fast.shape == (7, 3 * inputs) and bool((reference < 0).all())
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-10)


def test_float32_scores_agree_to_rounding() -> None:
    model = GPT(preset("debug", vocab_size=V, block_size=40), torch.Generator().manual_seed(3)).eval()
    groups = _groups(seed=5, n=9, inputs=4, words=2)
    fast = torch.tensor(score_groups(model, groups, 4))
    # fp32 log-softmax over 50 logits and sums of <= 3 terms of size ~4: a few ulps of 10, i.e. ~1e-5.
    torch.testing.assert_close(fast, torch.tensor(score_groups_reference(model, groups)), rtol=0, atol=1e-4)


def test_shared_prefix_stops_before_the_first_continuation() -> None:
    a, b = Request((9, 1, 2, 3, 4), 3), Request((9, 1, 2, 7), 3)
    assert shared_prefix([a, b]) == 2  # tokens 9, 1 shared; 2 is fed with the suffix to predict tokens[3]
    assert shared_prefix([a, Request((8, 1, 2, 3), 3)]) == 0
    assert shared_prefix([Request((9, 5), 1)]) == 0
    with pytest.raises(ValueError):
        Request((1, 2), 2)  # no continuation


def test_rewinding_the_cache_overwrites_the_continuation() -> None:
    model = GPT(preset("debug", vocab_size=V), torch.Generator().manual_seed(4)).eval()
    idx = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(0))
    cache = KVCache(model.config, 1)
    model(idx[:, :6], cache=cache)
    model(torch.tensor([[3, 4]]), cache=cache)  # a first continuation, then forgotten
    cache.rewind(6)
    logits, _ = model(idx[:, 6:], cache=cache)
    torch.testing.assert_close(logits, model(idx)[0][:, 6:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        cache.rewind(10)


# --- the boundary between context and continuation -----------------------------------------------------------

CORPUS = ["Sentiment: positive. Sentiment: negative. Answer:yes Answer:no answered " * 20]


@pytest.fixture(scope="module")
def bpe():  # noqa: ANN201
    return train_tokenizer(CORPUS, 290)


def test_trailing_space_moves_onto_the_continuation(bpe) -> None:  # noqa: ANN001
    ctx, cont = encode_pair(bpe, "Sentiment: ", "positive", "x")
    assert bpe.decode(ctx) == "Sentiment:" and bpe.decode(cont) == " positive"
    # the whole text's own encoding: the space belongs to the word as in training text, not to the prompt
    assert ctx + cont == bpe.encode("Sentiment: positive")
    assert bpe.encode("Sentiment: ") + bpe.encode("positive") != ctx + cont


def test_a_merge_across_the_boundary_drops_no_text(bpe) -> None:  # noqa: ANN001
    # This BPE has ":y" and "nswered": encoded together, "Answer:" + "yes" is [A, nswer, :y, es], so "the tokens
    # after the context's own 3" would be [es] and drop the "y"; "answer" + "ed" would leave nothing. There the
    # continuation is encoded apart: context + continuation still spell exactly the text.
    for context, continuation, merges in [
        ("Answer:", "yes", True),
        ("answer", "ed", True),
        ("Sentiment: pos", "itive", False),
    ]:
        ctx, cont = encode_pair(bpe, context, continuation, "x")
        assert cont and bpe.decode(ctx) + bpe.decode(cont) == context + continuation
        whole = bpe.encode(context + continuation)
        assert (whole[: len(ctx)] != ctx) == merges
        if merges:
            assert bpe.decode(ctx) + bpe.decode(whole[len(ctx) :]) != context + continuation  # the naive split
        else:
            assert ctx + cont == whole  # a token boundary: exactly the whole text's encoding


@pytest.mark.parametrize("shots, calibrate", [(0, False), (3, True)])
def test_prompting_scores_equal_the_reference_end_to_end(sentiment: Sentiment, shots: int, calibrate: bool) -> None:
    """Multi-token words (" superb" is spelled in pieces; " positive|good" gives a label two words) through
    the whole pipeline: demonstrations, calibration prompts, a context of 64 that cuts some prompts."""
    config = PromptConfig(
        str(sentiment.run),
        sentiment.dev,
        "sentiment",
        "0=negative|dull stuff,1=positive|superb",
        shots=shots,
        calibrate=calibrate,
        limit=12,
        batch_size=5,
    )
    model, tokenizer = load_language_model(sentiment.run, device="cpu")
    model = model.double()
    data = read_prompt_data(config, config.format().verbaliser)
    fast, fast_rows = evaluate_prompts(model, tokenizer, data, config, "cached", progress=False)
    slow, slow_rows = evaluate_prompts(model, tokenizer, data, config, "reference", progress=False)
    assert [len(tokenizer.encode(" " + w)) for w in ("dull stuff", "superb")] != [1, 1]
    for a, b in zip(fast_rows, slow_rows, strict=True):
        assert a["prediction"] == b["prediction"] and a["prompt"] == b["prompt"]
        for label in ("0", "1"):
            assert a["scores"][label] == pytest.approx(b["scores"][label], rel=1e-9, abs=1e-9)
    assert fast["accuracy"] == slow["accuracy"] and (fast["truncated"] > 0) == (shots > 0)
