"""Log-likelihoods of continuations: a plain reference, and the fast path the prompting command uses.

A `Request` is a token sequence and the index where its continuation starts; its score is

    sum over t >= start of log p(tokens[t] | tokens[:t])

as lm-evaluation-harness's `loglikelihood` (the last token is never fed: its logits would predict nothing).
The reference (`reference_loglikelihood`) runs one full forward pass per request: no cache, no batching.

The fast path (`score_groups`) takes groups of requests that share a long prefix - one test example's prompt
followed by each label word, and with contextual calibration its content-free prompts, which share the
demonstrations. For a batch of groups (legend: B groups, P the longest shared prefix, S the longest suffix):

  1. every group's shared prefix, left-padded to (B, P), runs once into a KV cache; positions count real tokens;
  2. for each request j of the groups, its suffix (B, S), right-padded, runs against the cache - rewound to P
     first, so the prefix is never recomputed - with positions continuing the prefix's; the hidden states at
     the continuation's positions go through the LM head (only there: no (B, S, V) logits) to log-probabilities.

Groups are batched by length, longest first, so padding is small. A group's shared prefix stops at least one
token before its earliest continuation, so every scored logit comes from step 2. Pad tokens are masked out of
attention, so each request sees exactly the tokens of its own sequence at the same positions as in the
reference: the two agree to float rounding (tests/train/evaluation/test_loglik.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from model.cache import KVCache
from model.gpt import GPT


@dataclass(frozen=True)
class Request:
    tokens: tuple[int, ...]  # context + continuation
    start: int  # index of the continuation's first token

    def __post_init__(self) -> None:
        if not 1 <= self.start < len(self.tokens):
            raise ValueError(f"start={self.start}: expected a context and a continuation in {len(self.tokens)} tokens")

    @property
    def scored(self) -> int:
        """How many tokens the continuation has."""
        return len(self.tokens) - self.start


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax over the vocabulary in at least fp32 (logits may be bf16 under autocast)."""
    return torch.log_softmax(logits.float() if logits.element_size() < 4 else logits, dim=-1)


@torch.no_grad()
def reference_loglikelihood(model: GPT, request: Request) -> float:
    """The score of one request from one plain forward pass over tokens[:-1]."""
    device = next(model.parameters()).device
    idx = torch.tensor([request.tokens[:-1]], device=device)  # (1, T)
    logits, _ = model(idx)  # (1, T, V): position t predicts tokens[t + 1]
    targets = torch.tensor(request.tokens[request.start :], device=device)  # (n,)
    logp = _log_probs(logits[0, request.start - 1 :])  # (n, V)
    return float(logp.gather(-1, targets[:, None]).double().sum())


def shared_prefix(group: Sequence[Request]) -> int:
    """How many leading tokens every request of `group` shares, stopping one token before the earliest
    continuation (so that its first token's logit is computed with the suffix)."""
    first = group[0].tokens
    n = min(r.start for r in group) - 1
    for r in group[1:]:
        same = 0
        limit = min(n, len(r.tokens))
        while same < limit and r.tokens[same] == first[same]:
            same += 1
        n = same
    return n


def _run(model: GPT, idx: torch.Tensor, pos: torch.Tensor, cache: KVCache, mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, C) of tokens idx (B, T) at positions pos (B, T), appended to the cache; `mask`
    (B, cached + T) is False at pad keys."""
    return model.backbone(model.embed(idx, pos), pos, cache, padding_mask=mask)


@torch.no_grad()
def _score_batch(model: GPT, groups: Sequence[Sequence[Request]]) -> list[list[float]]:
    device = next(model.parameters()).device
    if len({len(g) for g in groups}) != 1:
        raise ValueError("every group in a batch must hold the same number of requests")
    B, G = len(groups), len(groups[0])
    prefix = [shared_prefix(g) for g in groups]
    P = max(prefix)
    S = max(len(r.tokens) - 1 - p for g, p in zip(groups, prefix, strict=True) for r in g)
    cache = KVCache(model.config, B, max_len=P + S)
    prefix_mask = torch.zeros(B, P, dtype=torch.bool)  # left padding: real tokens at the end
    if P:
        idx = torch.zeros(B, P, dtype=torch.long)
        for i, (g, p) in enumerate(zip(groups, prefix, strict=True)):
            if p:
                idx[i, P - p :] = torch.tensor(g[0].tokens[:p])
                prefix_mask[i, P - p :] = True
        pos = (prefix_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P): 0, 1, ... over the real tokens
        _run(model, idx.to(device), pos.to(device), cache, prefix_mask.to(device))
    prefix_mask = prefix_mask.to(device)
    starts = torch.tensor(prefix, device=device)[:, None]  # (B, 1): where each suffix's positions begin
    scores = torch.zeros(B, G, dtype=torch.float64, device=device)
    for j in range(G):
        cache.rewind(P)
        requests = [g[j] for g in groups]
        width = max(len(r.tokens) - 1 - p for r, p in zip(requests, prefix, strict=True))
        idx = torch.zeros(B, width, dtype=torch.long)
        suffix_mask = torch.zeros(B, width, dtype=torch.bool)  # right padding
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for i, (r, p) in enumerate(zip(requests, prefix, strict=True)):
            suffix = r.tokens[p:-1]
            idx[i, : len(suffix)] = torch.tensor(suffix)
            suffix_mask[i, : len(suffix)] = True
            rows += [i] * r.scored
            cols += range(r.start - 1 - p, len(r.tokens) - 1 - p)  # where tokens[start:] are predicted
            targets += r.tokens[r.start :]
        pos = (starts + torch.arange(width, device=device)).clamp(max=model.config.block_size - 1)  # pads may overrun
        mask = torch.cat([prefix_mask, suffix_mask.to(device)], dim=1)  # (B, P + width)
        h = _run(model, idx.to(device), pos, cache, mask)  # (B, width, C)
        r_idx, c_idx = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
        logp = _log_probs(model.lm_head(h[r_idx, c_idx]))  # (N, V): only the scored positions
        picked = logp.gather(-1, torch.tensor(targets, device=device)[:, None])[:, 0]  # (N,)
        scores[:, j].index_add_(0, r_idx, picked.double())
    return scores.tolist()


def score_groups(
    model: GPT,
    groups: Sequence[Sequence[Request]],
    batch_size: int,
    advance: Callable[[int], object] = lambda n: None,
) -> list[list[float]]:
    """Every request's score, group by group, by the fast path; `advance(n)` is called after each batch of n
    groups (a progress bar). Groups are batched by length; all groups must hold the same number of requests."""
    order = sorted(range(len(groups)), key=lambda i: -max(len(r.tokens) for r in groups[i]))
    out: list[list[float]] = [[] for _ in groups]
    for b in range(0, len(order), batch_size):
        ids = order[b : b + batch_size]
        for i, scores in zip(ids, _score_batch(model, [groups[i] for i in ids]), strict=True):
            out[i] = scores
        advance(len(ids))
    return out


def score_groups_reference(
    model: GPT, groups: Sequence[Sequence[Request]], advance: Callable[[int], object] = lambda n: None
) -> list[list[float]]:
    """The same scores by the reference: one forward pass per request."""
    out = []
    for g in groups:
        out.append([reference_loglikelihood(model, r) for r in g])
        advance(1)
    return out
