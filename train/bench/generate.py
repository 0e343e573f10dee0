"""Generation tokens/s (`cgpt bench generate`): tokens/s with and without the KV cache, for the same model, same prompt.

Without the cache every new token reruns the whole context (O(T^2) work over a generation); with it each step
feeds one token and attends to stored keys/values (O(T)). Both paths give the same greedy tokens, which this
benchmark checks before it reports the speed-up.
"""

from __future__ import annotations

import time

import torch

from model import GPT, GPTConfig, param_counts


def bench_config(vocab_size: int = 8192, n_layer: int = 8, n_embd: int = 320, block_size: int = 1024) -> GPTConfig:
    """About 10M parameters (12.4M counting the 8192-token embedding): a small model a CPU can sample from."""
    return GPTConfig(
        vocab_size=vocab_size,
        block_size=block_size,
        n_layer=n_layer,
        n_head=n_embd // 64,
        n_embd=n_embd,
        attention="sdpa",
    )


def time_generation(model: GPT, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    """(seconds, tokens) for greedy generation of `new_tokens` after `prompt`."""
    start = time.perf_counter()
    out = model.generate(prompt, new_tokens, temperature=0.0, use_cache=use_cache)
    return time.perf_counter() - start, out


def bench_generate(
    config: GPTConfig, new_tokens: int = 512, prompt_len: int = 16, batch: int = 1, seed: int = 0
) -> dict[str, float]:
    torch.manual_seed(seed)
    model = GPT(config, torch.Generator().manual_seed(seed)).eval()
    prompt = torch.randint(0, config.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(seed))
    time_generation(model, prompt, 8, use_cache=True)  # warm-up
    t_cache, out_cache = time_generation(model, prompt, new_tokens, use_cache=True)
    t_plain, out_plain = time_generation(model, prompt, new_tokens, use_cache=False)
    return {
        "params": param_counts(config).total,
        "new_tokens": new_tokens,
        "batch": batch,
        "cache_tokens_per_s": batch * new_tokens / t_cache,
        "no_cache_tokens_per_s": batch * new_tokens / t_plain,
        "speedup": t_plain / t_cache,
        "same_tokens": bool(torch.equal(out_cache, out_plain)),
    }


def report(r: dict[str, float], config: GPTConfig) -> str:
    """The benchmark's result as the lines `cgpt bench generate` prints."""
    return "\n".join(
        [
            f"model: {r['params'] / 1e6:.1f}M params ({config.n_layer} layers x {config.n_embd}, vocab "
            f"{config.vocab_size}), {r['new_tokens']} new tokens, batch {r['batch']}, greedy, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads",
            f"  with KV cache    : {r['cache_tokens_per_s']:8.1f} tokens/s",
            f"  without KV cache : {r['no_cache_tokens_per_s']:8.1f} tokens/s",
            f"  speed-up         : {r['speedup']:.1f}x   (same tokens: {r['same_tokens']})",
        ]
    )
