"""`cgpt sample`: stream text from a trained run, using the KV cache.

Tokens are decoded as they arrive: the text decoded so far is re-decoded each step and only its new suffix is
printed, so a character whose bytes span several BPE tokens appears once it is complete.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from model import GPT
from train.checkpoint import load_model
from train.errors import CgptError
from train.hardware import resolve_device
from train.runlog import RunDir
from train.tokenizer import Tokenizer


def load_run(run_dir: str | Path, which: str = "best", device: str = "auto") -> tuple[GPT, Tokenizer]:
    """The model (in eval mode, on `device`) and tokenizer of a run directory; `which` is best | last | a path."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise CgptError(f"{run.path}: run directory not found")
    path = Path(which) if which not in ("best", "last") else run.final_checkpoint(which)
    model, state = load_model(path)
    tokenizer = Tokenizer.load(run.tokenizer)
    if state.get("tokenizer_hash") not in (None, tokenizer.hash):
        raise CgptError(f"{path}: trained with tokenizer {state['tokenizer_hash']}, but {run.tokenizer} holds "
                        f"{tokenizer.hash}")
    return model.to(resolve_device(device)).eval(), tokenizer


def stream_text(model: GPT, tokenizer: Tokenizer, prompt: str, max_new_tokens: int, temperature: float,
                top_k: int | None, top_p: float | None, generator: torch.Generator) -> Iterator[str]:
    """Yield pieces of text as the model generates them (stops at end-of-text)."""
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt) if prompt else [tokenizer.eot_id]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    new: list[int] = []
    shown = ""
    for token in model.stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache=True,
                              generator=generator, stop_token=tokenizer.eot_id):
        if int(token) == tokenizer.eot_id:
            break
        new.append(int(token))
        text = tokenizer.decode(new)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            yield text[len(shown):]
            shown = text
    text = tokenizer.decode(new)
    if len(text) > len(shown):
        yield text[len(shown):]


def run(args: argparse.Namespace) -> int:
    model, tokenizer = load_run(args.run, args.checkpoint, args.device)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        sys.stdout.write(args.prompt)
        for piece in stream_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature,
                                 args.top_k, args.top_p, generator):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained run (streams, KV cache)")
    p.add_argument("--run", required=True, help="a run directory from pretrain or finetune --task generate")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--checkpoint", default="best", help="best | last | a checkpoint path (default best)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)
