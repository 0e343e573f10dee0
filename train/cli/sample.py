"""`cgpt sample`: stream text from a trained run (a pretraining run, or `finetune --task generate`), KV cache on.

cgpt sample --run runs/books --prompt "Once upon a time" --max-new-tokens 200 --top-p 0.9
"""

from __future__ import annotations

import argparse
import sys

from train.cli import flags
from train.errors import CgptError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="generate text from a trained run (streams, KV cache)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.add_run_flags(p, "a run directory from pretrain or finetune --task generate")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    p.add_argument("--max-new-tokens", type=flags.positive_int, default=200)
    p.add_argument("--temperature", type=flags.nonneg_float, default=0.8, help="0 is greedy")
    p.add_argument("--top-k", type=flags.positive_int, default=None)
    p.add_argument("--top-p", type=flags.open_probability, default=None)
    p.add_argument("--seed", type=flags.integer, default=1337)
    p.add_argument("--num-samples", type=flags.positive_int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from train.runs import load_language_model
    from train.sample import stream_text

    model, tokenizer = load_language_model(args.run, args.checkpoint, args.device)
    try:
        tokenizer.encode(args.prompt)  # before anything is printed
    except CgptError as err:
        raise CgptError(f"--prompt: {err}") from None
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        sys.stdout.write(args.prompt)
        for piece in stream_text(
            model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, generator
        ):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0
