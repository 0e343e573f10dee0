"""Prompt scoring examples/s (`cgpt bench prompt`): the batched, prefix-cached path against the plain reference
(one full forward pass per prompt + continuation, no cache, no batching), on the same prompts of a real run.

Both paths score the same built prompts (the first seed's demonstrations), alternating round by round so that
machine load hits both alike; the best round of each is reported. The two must give the same scores (the
largest difference is reported; tests/train/evaluation/test_loglik.py bounds it) before the speed-up means
anything.
"""

from __future__ import annotations

from typing import Any

import torch

from train.evaluation.prompt import (
    PromptConfig,
    build_prompts,
    check_words,
    load_prompt_model,
    read_prompt_data,
    score_prompts,
)


def bench_prompt(config: PromptConfig, rounds: int = 2) -> dict[str, Any]:
    fmt = config.format()
    data = read_prompt_data(config, fmt.verbaliser)
    model, tokenizer = load_prompt_model(config)
    check_words(fmt, tokenizer, model.config.block_size)
    built = build_prompts(tokenizer, data, config, fmt, config.seeds[0], model.config.block_size)
    quiet = lambda n: None  # noqa: E731
    score_prompts(model, built[: config.batch_size], config.batch_size, "cached", quiet)  # warm-up
    seconds: dict[str, list[float]] = {"cached": [], "reference": []}
    scores: dict[str, list[list[float]]] = {}
    for _ in range(rounds):
        for scorer in seconds:
            scores[scorer], wall = score_prompts(model, built, config.batch_size, scorer, quiet)
            seconds[scorer].append(wall)
    diff = max(
        abs(a - b)
        for fast, slow in zip(scores["cached"], scores["reference"], strict=True)
        for a, b in zip(fast, slow, strict=True)
    )
    n = len(built)
    device = next(model.parameters()).device
    return {
        "examples": n,
        "requests": sum(len(b.requests) for b in built),
        "tokens": sum(len(r.tokens) for b in built for r in b.requests),
        "shots": config.shots,
        "calibrated": config.calibrate,
        "batch_size": config.batch_size,
        "cached_examples_per_s": n / min(seconds["cached"]),
        "reference_examples_per_s": n / min(seconds["reference"]),
        "speedup": min(seconds["reference"]) / min(seconds["cached"]),
        "max_abs_diff": diff,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "params": model.num_params(),
    }


def report(r: dict[str, Any]) -> str:
    """The lines `cgpt bench prompt` prints."""
    setting = f"{r['shots']}-shot" + (", calibrated" if r["calibrated"] else "")
    return "\n".join(
        [
            f"{r['examples']} examples ({setting}): {r['requests']} prompt + word sequences, {r['tokens']} tokens; "
            f"{r['params'] / 1e6:.2f}M params on {r['device']} ({r['threads']} threads), best of the rounds",
            f"  batched + prefix cache (batch {r['batch_size']}): {r['cached_examples_per_s']:8.1f} examples/s",
            f"  reference (one forward per sequence)    : {r['reference_examples_per_s']:8.1f} examples/s",
            f"  speed-up {r['speedup']:.1f}x   (largest score difference {r['max_abs_diff']:.2e} nats)",
        ]
    )
