"""train:auto: the vocabulary chosen for a budget by Tao et al. 2024's law, iterated with the plan."""

from __future__ import annotations

import json

import pytest

from model.flops import param_counts
from train.cli import main
from train.planner.plan import make_plan
from train.planner.vocab import GAMMA, MIN_VOCAB, vocab_for_flops, vocab_for_params


def test_the_law_gives_its_anchor_and_grows_slower_than_the_model() -> None:
    assert vocab_for_params(68.5e9, 8192) == pytest.approx(216_000, rel=0.001)  # Llama2-70B, their headline
    # 10x the non-embedding parameters at the same width: 10^0.83 = 6.8x the vocabulary, not 10x
    assert vocab_for_params(1e9, 2048) / vocab_for_params(1e8, 2048) == pytest.approx(10**GAMMA, rel=0.01)
    assert vocab_for_params(1e3, 512) == MIN_VOCAB


def test_smaller_budgets_get_smaller_vocabularies_and_embeddings_do_not_dominate() -> None:
    budgets = [1e13, 1e14, 1e15, 1e16, 1e17, 1e18]
    vocabs = [vocab_for_flops(c, 256) for c in budgets]
    assert vocabs == sorted(vocabs) and vocabs[0] < vocabs[-1] and all(v % 64 == 0 for v in vocabs)
    for c, v in zip(budgets, vocabs, strict=True):
        plan = make_plan("flops", c, v, 256)
        embedding_share = 1 - param_counts(plan.model_config()).non_embedding / plan.params
        assert embedding_share < 0.35, (c, v, embedding_share)  # the fixed 4096 gave 83% at the quickstart's budget


def test_prepare_train_auto_needs_a_budget(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import random

    rng = random.Random(0)  # varied enough text for a few hundred merges
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    (tmp_path / "a.txt").write_text(" ".join(words))
    base = ["prepare", "--input", str(tmp_path / "a.txt"), "--tokenizer", "train:auto", "--out", str(tmp_path / "d")]
    assert main(base) == 1
    assert "--budget" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main([*base, "--budget", "1e12", "--json"]) == 0
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["tokenizer"]["vocab_size"] == vocab_for_flops(1e12, 256)
