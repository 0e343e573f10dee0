"""`predict`: what a fine-tuned run says about new text (`cgpt predict`) - a label, tags, a number or a generation.

    cgpt predict --run RUN --text "a gripping, funny film"         ->  1<TAB>a gripping, funny film
    cgpt predict --run RUN --input texts.txt                       one example per line
    cgpt predict --run NER --text "Alex lives in Paris"            ->  Alex/B-PER lives/O in/O Paris/B-LOC

Input lines are plain text: tagging splits them on whitespace into words, generation reads each as a prompt.
An --input file ending in .tsv, .csv, .jsonl or (tagging) .conll is read with the task's reader instead, its
labels and responses ignored.
The encoding is the training one (train/finetune/encode.py): a classification text gets the extract token, a prompt
becomes [eot] + prompt; a text longer than the context is cut (counted on stderr), or refused with --strict.
Generation is greedy unless --temperature is above 0, and stops at end-of-text or --max-new-tokens.
"""

from __future__ import annotations

import torch

from train.errors import CgptError
from train.finetune.config import EVAL_BATCH_SIZE
from train.finetune.encode import batches, encode_classification, encode_prompt, encode_tagging, word_predictions
from train.finetune.readers import Example, GenerationExample, TaggedExample, TextExample, read_lines
from train.finetune.splits import read_examples
from train.runs import Finetuned


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
        new = fin.model.backbone.generate(idx, max_new_tokens, temperature, generator=generator, stop_token=eot)
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


def read_inputs(fin: Finetuned, path: str) -> list[Example]:
    """Unlabelled examples from a file: one text per line, or a .tsv/.csv/.jsonl/.conll in the task's format."""
    if path.endswith((".tsv", ".csv", ".jsonl", ".json", ".conll")):
        return read_examples(fin.ft, path, with_labels=False)
    return examples_from_texts(fin.ft.task, read_lines(path), path)
