"""`cgpt predict`: what a fine-tuned run says about new text - a label, tags, a number or a generation.

    cgpt predict --run RUN --text "a gripping, funny film"         ->  1<TAB>a gripping, funny film
    cgpt predict --run RUN --input texts.txt                       one example per line
    cgpt predict --run NER --text "Alex lives in Paris"            ->  Alex/B-PER lives/O in/O Paris/B-LOC

Input lines are plain text: tagging splits them on whitespace into words, generation reads each as a prompt.
An --input file ending in .tsv, .csv, .jsonl or (tagging) .conll is read with the task's reader instead, its
labels and responses ignored.
The encoding is the training one (train/encode.py): a classification text gets the extract token, a prompt
becomes [eot] + prompt; a text longer than the context is cut (counted on stderr), or refused with --strict.
Generation is greedy unless --temperature is above 0, and stops at end-of-text or --max-new-tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from train.encode import batches, encode_classification, encode_prompt, encode_tagging, word_predictions
from train.errors import CgptError
from train.evaluate import EVAL_BATCH_SIZE, Finetuned, load_finetuned
from train.finetune_config import cwd_importable
from train.task_data import Example, read_examples
from train.tasks import GenerationExample, TaggedExample, TextExample


def examples_from_texts(task: str, texts: list[str], where: str) -> list[Example]:
    """Unlabelled examples from plain lines; `where` names them in errors ("file:line")."""
    out: list[Example] = []
    for n, text in enumerate(texts, start=1):
        if not text.strip():
            continue
        if task == "tag":
            out.append(TaggedExample(tuple(text.split()), None, f"{where}:{n}"))
        elif task == "generate":
            out.append(GenerationExample(text, "", f"{where}:{n}"))
        else:
            out.append(TextExample(text.strip(), None, f"{where}:{n}"))
    if not out:
        raise CgptError(f"{where}: no text to predict")
    return out


@torch.no_grad()
def _label_outputs(fin: Finetuned, examples: list[Example], strict: bool) -> tuple[list[str], int]:
    """Classify, tag or regress: one output line per example, and how many inputs were cut."""
    tok, labels, task, max_len = fin.tokenizer, fin.labels, fin.ft.task, fin.block_size
    if task == "tag":
        encoded, cut = encode_tagging(examples, tok, labels, max_len, strict)  # type: ignore[arg-type]
    else:
        encoded, cut = encode_classification(
            examples,
            tok,
            labels,
            max_len,
            strict,  # type: ignore[arg-type]
            regression=task == "regress",
        )
    device, names = next(fin.model.parameters()).device, labels.names if labels else ()
    values: list = []
    for batch in batches(encoded, EVAL_BATCH_SIZE, tok.pad_id):
        batch = {k: v.to(device) for k, v in batch.items()}
        predicted = fin.model.predict(batch)
        fill = names.index("O") if "O" in names else 0
        values += word_predictions(predicted, batch, fill) if task == "tag" else predicted.tolist()
    if task == "tag":
        return [
            " ".join(f"{w}/{names[t]}" for w, t in zip(ex.tokens, row, strict=True))  # type: ignore[union-attr]
            for ex, row in zip(examples, values, strict=True)
        ], cut
    shown = [f"{v:.4f}" if task == "regress" else names[v] for v in values]
    return [f"{v}\t{ex.text}" for v, ex in zip(shown, examples, strict=True)], cut  # type: ignore[union-attr]


@torch.no_grad()
def _generations(
    fin: Finetuned, examples: list[Example], max_new_tokens: int, temperature: float, seed: int
) -> list[str]:
    device = next(fin.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    eot, out = fin.tokenizer.eot_id, []
    for ex in examples:
        ids = encode_prompt(fin.tokenizer, ex.prompt)  # type: ignore[union-attr]
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        new = fin.model.backbone.generate(
            idx, max_new_tokens, temperature, generator=generator, stop_token=eot
        )
        out.append(fin.tokenizer.decode(t for t in new[0, len(ids) :].tolist() if t != eot))
    return out


def predict(
    fin: Finetuned,
    examples: list[Example],
    strict: bool = False,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[list[str], int]:
    """(one output line per example, how many were cut to the context)."""
    if fin.ft.task == "generate":
        return _generations(fin, examples, max_new_tokens, temperature, seed), 0
    return _label_outputs(fin, examples, strict)


def _read_input(fin: Finetuned, path: str) -> list[Example]:
    if path.endswith((".tsv", ".csv", ".jsonl", ".json", ".conll")):
        return read_examples(fin.ft, path, with_labels=False)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError) as err:
        raise CgptError(f"{path}: cannot read ({err})") from None
    return examples_from_texts(fin.ft.task, lines, path)


def run(args: argparse.Namespace) -> int:
    cwd_importable()
    fin = load_finetuned(args.run, args.checkpoint, args.device)
    examples = (
        examples_from_texts(fin.ft.task, [args.text], "--text") if args.text else _read_input(fin, args.input)
    )
    lines, cut = predict(fin, examples, args.strict, args.max_new_tokens, args.temperature, args.seed)
    if cut:
        print(
            f"{cut} of {len(examples)} inputs cut to the context of {fin.block_size} tokens", file=sys.stderr
        )
    print("\n".join(lines))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="labels, tags or generations of a fine-tuned run for new text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", required=True, help="a run directory written by `cgpt finetune`")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="one text (a sentence, or a prompt for generate)")
    source.add_argument("--input", help="a file: one text per line, or .tsv/.csv/.jsonl in the task's format")
    p.add_argument("--strict", action="store_true", help="a text longer than the context is an error")
    p.add_argument("--max-new-tokens", type=int, default=64, help="generate: tokens to add at most")
    p.add_argument("--temperature", type=float, default=0.0, help="generate: 0 is greedy")
    p.add_argument("--seed", type=int, default=0, help="generate: seed when sampling")
    p.add_argument("--checkpoint", default="best", help="best | last | a checkpoint path (default best)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)
