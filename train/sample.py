"""Sampling: stream text from a language model, using the KV cache (`cgpt sample`).

Tokens are decoded as they arrive: the text decoded so far is re-decoded each step and only its new suffix is
printed, so a character whose bytes span several BPE tokens appears once it is complete.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from model.gpt import GPT
from train.data.tokenizer import Tokenizer


def stream_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator,
) -> Iterator[str]:
    """Yield pieces of text as the model generates them (stops at end-of-text)."""
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.eot_id]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    new: list[int] = []
    shown = ""
    for token in model.stream(
        idx, max_new_tokens, temperature, top_k, top_p, use_cache=True, generator=generator, stop_token=tokenizer.eot_id
    ):
        if int(token) == tokenizer.eot_id:
            break
        new.append(int(token))
        text = tokenizer.decode(new)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            yield text[len(shown) :]
            shown = text
    text = tokenizer.decode(new)
    if len(text) > len(shown):
        yield text[len(shown) :]
