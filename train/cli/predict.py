"""`cgpt predict`: what a fine-tuned run says about new text - a label, tags, a number or a generation.

    cgpt predict --run RUN --text "a gripping, funny film"         ->  1<TAB>a gripping, funny film
    cgpt predict --run RUN --input texts.txt                       one example per line
    cgpt predict --run NER --text "Alex lives in Paris"            ->  Alex/B-PER lives/O in/O Paris/B-LOC

Input lines are plain text: tagging splits them on whitespace into words, generation reads each as a prompt.
An --input file ending in .tsv, .csv, .jsonl or (tagging) .conll is read with the task's reader instead, its
labels and responses ignored.
The encoding is the training one (train/finetune/encode.py): a classification text gets the extract token, a
prompt becomes [eot] + prompt; a text longer than the context is cut (counted on stderr), or refused with
--strict. Generation is greedy unless --temperature is above 0, and stops at end-of-text or --max-new-tokens.
"""

from __future__ import annotations

import argparse
import sys

from train.cli import flags


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="labels, tags or generations of a fine-tuned run for new text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.add_run_flags(p, "a run directory written by `cgpt finetune`")
    flags.add_head_flag(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text (a sentence, or a prompt for generate)")
    source.add_argument("--input", help="a file: one text per line, or .tsv/.csv/.jsonl in the task's format")
    p.add_argument("--strict", action="store_true", help="a text longer than the context is an error")
    p.add_argument("--max-new-tokens", type=flags.positive_int, default=64, help="generate: tokens to add at most")
    p.add_argument("--temperature", type=flags.nonneg_float, default=0.0, help="generate: 0 is greedy")
    p.add_argument("--seed", type=flags.integer, default=0, help="generate: seed when sampling")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.evaluation.predict import examples_from_texts, predict, read_inputs
    from train.runs import load_finetuned

    fin = load_finetuned(args.run, args.checkpoint, args.device, flags.user_head(args.head))
    texts = examples_from_texts(fin.ft.task, [args.text], "--text") if args.text is not None else None
    examples = texts if texts is not None else read_inputs(fin, args.input)
    lines, cut = predict(fin, examples, args.strict, args.max_new_tokens, args.temperature, args.seed)
    if cut:
        print(f"{cut} of {len(examples)} inputs cut to the context of {fin.block_size} tokens", file=sys.stderr)
    print("\n".join(lines))
    return 0
