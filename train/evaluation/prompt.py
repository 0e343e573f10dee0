"""Zero- and few-shot prompting of a language model (`cgpt prompt`): how far a pretrained run gets on a labelled
task with no gradient step, given a template, K demonstrations and a word per label (GPT-3's in-context
learning, Brown et al. 2020), with the conventions of EleutherAI's lm-evaluation-harness.

    prompt(PromptConfig, out) -> {"accuracy", "macro_f1", "n", "shots", "calibrated", "per_class",
                                  "majority_baseline", "chance", "seeds", "accuracy_std", "truncated", ...}

A label's score combines its words' log-likelihoods as continuations of the prompt (train/evaluation/loglik.py;
prompts from train/evaluation/fewshot.py):
  normalize  none: the summed log-likelihood (the harness's `acc`); chars: divided by the word's characters
             (`acc_norm`); tokens: divided by its tokens (a per-token mean)
  combine    sum: log of the words' summed probabilities (logsumexp); best: the best word's score
Contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): p = softmax of the label scores; p_cf the
mean of the same for the content-free inputs "N/A", "" and "[MASK]" in the example's own k-shot prompt; the
prediction is argmax diag(p_cf)^-1 p. With several seeds, accuracy, macro-F1 and each per-class figure are means
over the seeds and accuracy_std is their sample standard deviation (zero-shot prompts draw nothing, so every
seed gives the same numbers). Baselines: chance (1 / labels) and the majority label of the evaluated data.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.gpt import GPT
from train.data.tokenizer import Tokenizer
from train.errors import CgptError
from train.evaluation.fewshot import Built, DemoPool, PromptFormat, build, encode
from train.evaluation.loglik import Request, score_groups, score_groups_reference
from train.evaluation.templates import Verbaliser, resolve_template
from train.finetune.metrics import classification_report
from train.finetune.readers import TextExample, read_classification
from train.runs import load_language_model
from train.runtime.hardware import autocast, resolve_dtype

NORMALIZE = ("none", "tokens", "chars")
COMBINE = ("sum", "best")
SCORERS = ("cached", "reference")  # the fast path, or one plain forward pass per prompt + continuation


@dataclass(frozen=True)
class PromptConfig:
    run: str
    data: str
    template: str  # a built-in name (train/evaluation/templates.py), @FILE, or the text with {text}
    labels: str  # "0=negative,1=positive|great"
    shots: int = 0
    demos: str | None = None  # the demonstration pool; None: the data file itself (never the test example)
    balanced: bool = False
    calibrate: bool = False
    seeds: tuple[int, ...] = (0,)
    normalize: str = "none"
    combine: str = "sum"
    batch_size: int = 16  # test examples per batch
    limit: int = 0  # score the first N examples; 0: all
    fewshot_delimiter: str = "\n\n"
    target_delimiter: str = " "
    text_field: str | None = None
    label_field: str = "label"
    checkpoint: str = "best"
    device: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        for name in ("shots", "limit"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise CgptError(f"--{name}={getattr(self, name)!r}: expected an integer >= 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise CgptError(f"--batch-size={self.batch_size!r}: expected a positive integer")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise CgptError(f"--seeds={','.join(map(str, self.seeds))!r}: expected integers >= 0, e.g. 1,2,3")
        if len(set(self.seeds)) != len(self.seeds):
            raise CgptError(f"--seeds={','.join(map(str, self.seeds))!r}: a seed is repeated")
        if self.normalize not in NORMALIZE:
            raise CgptError(f"--normalize={self.normalize!r}: expected one of {', '.join(NORMALIZE)}")
        if self.combine not in COMBINE:
            raise CgptError(f"--combine={self.combine!r}: expected one of {', '.join(COMBINE)}")
        self.format()  # the template and the labels are checked now, before any model is loaded

    def format(self) -> PromptFormat:
        verbaliser = Verbaliser.parse(self.labels)
        template = resolve_template(self.template)
        return PromptFormat(template, verbaliser, self.fewshot_delimiter, self.target_delimiter, self.calibrate)


# --- data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptData:
    examples: list[TextExample]  # the ones scored
    pool: DemoPool | None  # None for zero-shot


def read_prompt_data(config: PromptConfig, verbaliser: Verbaliser) -> PromptData:
    """The examples to score and the demonstration pool, every label checked against the verbaliser."""

    def read(path: str) -> list[TextExample]:
        examples = read_classification(path, config.text_field, config.label_field)
        for ex in examples:
            verbaliser.index(ex.label, ex.where)  # type: ignore[arg-type]
        return examples

    everything = read(config.data)
    examples = everything[: config.limit] if config.limit else everything
    pool = None
    if config.shots:
        pool = (
            DemoPool(read(config.demos), config.demos, False)
            if config.demos
            else DemoPool(everything, config.data, True)
        )
        pool.check(config.shots, config.balanced, verbaliser.labels)
    return PromptData(examples, pool)


def check_words(fmt: PromptFormat, tokenizer: Tokenizer, block_size: int) -> None:
    """Every word must encode (the char tokenizer knows its characters) and leave room for a context."""
    encode(tokenizer, fmt.template.replace("{text}", "") + fmt.fewshot_delimiter, "--template")
    for _, word in fmt.verbaliser.all_words:
        n = len(encode(tokenizer, fmt.target_delimiter + word, f"--labels word {word!r}"))
        if n >= block_size:
            raise CgptError(f"--labels: {word!r} is {n} tokens, too long for the run's context of {block_size}")


# --- from scores to predictions --------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def label_scores(
    scores: Sequence[float], requests: Sequence[Request], fmt: PromptFormat, normalize: str, combine: str
) -> np.ndarray:
    """(inputs, labels): each input's label scores from its words' log-likelihoods (input-major, as built)."""
    words = fmt.verbaliser.all_words
    s = np.asarray(scores, dtype=np.float64).reshape(-1, len(words))  # (inputs, words)
    if normalize == "tokens":
        s = s / np.array([r.scored for r in requests], dtype=np.float64).reshape(s.shape)
    elif normalize == "chars":
        s = s / np.array([len(w) for _, w in words], dtype=np.float64)
    owner = np.array([label for label, _ in words])
    reduce = np.max if combine == "best" else np.logaddexp.reduce
    return np.stack([reduce(s[:, owner == i], axis=1) for i in range(len(fmt.verbaliser.labels))], axis=1)


def calibrated(scores: np.ndarray) -> np.ndarray:
    """log(p / p_cf) per label: row 0 is the input, rows 1.. the content-free inputs (Zhao et al. 2021)."""
    p = _softmax(scores)  # (inputs, labels)
    return np.log(p[0]) - np.log(p[1:].mean(axis=0))


# --- the evaluation ------------------------------------------------------------------------------------------


def _scorer(name: str, model: GPT, batch_size: int) -> Callable[..., list[list[float]]]:
    if name not in SCORERS:
        raise ValueError(f"scorer={name!r}: expected one of {SCORERS}")
    return (
        partial(score_groups, model, batch_size=batch_size)
        if name == "cached"
        else partial(score_groups_reference, model)
    )


def _seed_run(
    model: GPT,
    tokenizer: Tokenizer,
    data: PromptData,
    config: PromptConfig,
    fmt: PromptFormat,
    seed: int,
    bar: Any,
    scorer: str,
) -> tuple[list[Built], list[np.ndarray], float]:
    """Each example's prompt and (inputs, labels) scores for one seed; and the scoring time in seconds."""
    labels, block = fmt.verbaliser.labels, model.config.block_size
    built = []
    for i, ex in enumerate(data.examples):
        demos = data.pool.draw(ex, i, seed, config.shots, config.balanced, labels) if data.pool else []
        built.append(build(fmt, tokenizer, ex, demos, block))
    device = next(model.parameters()).device
    start = time.perf_counter()
    with autocast(device, resolve_dtype("auto", device)):
        scores = _scorer(scorer, model, config.batch_size)([b.requests for b in built], advance=bar.update)
    wall = time.perf_counter() - start
    per_label = [
        label_scores(s, b.requests, fmt, config.normalize, config.combine) for s, b in zip(scores, built, strict=True)
    ]
    return built, per_label, wall


def _metrics(true: list[int], pred: list[int], labels: Sequence[str]) -> dict[str, Any]:
    report = classification_report([labels[t] for t in true], [labels[p] for p in pred], labels=list(labels))
    return {"accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"], "per_class": report["per_class"]}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def evaluate_prompts(
    model: GPT,
    tokenizer: Tokenizer,
    data: PromptData,
    config: PromptConfig,
    scorer: str = "cached",
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the result, one row per example and seed) for a loaded model; `prompt` is this plus loading and files."""
    fmt = config.format()
    labels = fmt.verbaliser.labels
    check_words(fmt, tokenizer, model.config.block_size)
    true = [labels.index(ex.label) for ex in data.examples]  # type: ignore[arg-type]
    runs = config.seeds if config.shots else config.seeds[:1]  # a zero-shot prompt draws nothing
    seeds, rows, walls = [], [], []
    with tqdm(total=len(runs) * len(data.examples), unit="ex", desc="prompt", disable=not progress) as bar:
        for seed in runs:
            built, scores, wall = _seed_run(model, tokenizer, data, config, fmt, seed, bar, scorer)
            walls.append(wall)
            final = [calibrated(s) if config.calibrate else s[0] for s in scores]
            pred = [int(np.argmax(f)) for f in final]
            entry = {"seed": seed, **_metrics(true, pred, labels)}
            if config.calibrate:
                raw = _metrics(true, [int(np.argmax(s[0])) for s in scores], labels)
                entry["uncalibrated"] = {"accuracy": raw["accuracy"], "macro_f1": raw["macro_f1"]}
            entry["truncated"] = sum(b.truncated for b in built)
            entry["demos_dropped"] = sum(b.demos_dropped for b in built)
            seeds.append(entry)
            for ex, b, s, f, p in zip(data.examples, built, scores, final, pred, strict=True):
                row = {"seed": seed, "where": ex.where, "prompt": b.prompt, "label": ex.label}
                row.update(prediction=labels[p], correct=labels[p] == ex.label, truncated=b.truncated)
                row["scores"] = dict(zip(labels, map(float, f), strict=True))
                if config.calibrate:
                    row["uncalibrated_scores"] = dict(zip(labels, map(float, s[0]), strict=True))
                rows.append(row)
    if len(runs) < len(config.seeds):
        seeds = [{**seeds[0], "seed": s} for s in config.seeds]
    return summarise(config, fmt, true, seeds, sum(walls)), rows


def summarise(config: PromptConfig, fmt: PromptFormat, true: list[int], seeds: list[dict], wall: float) -> dict:
    labels = fmt.verbaliser.labels
    accuracy, std = _mean_std([s["accuracy"] for s in seeds])
    counts = Counter(true)
    majority = max(range(len(labels)), key=lambda i: (counts[i], -i))
    per_class = {
        name: {k: float(np.mean([s["per_class"][name][k] for s in seeds])) for k in ("precision", "recall", "f1")}
        | {"support": counts[i]}
        for i, name in enumerate(labels)
    }
    result: dict[str, Any] = {
        "accuracy": accuracy,
        "accuracy_std": std,
        "macro_f1": float(np.mean([s["macro_f1"] for s in seeds])),
        "n": len(true),
        "shots": config.shots,
        "calibrated": config.calibrate,
        "per_class": per_class,
        "majority_baseline": counts[majority] / len(true),
        "majority_label": labels[majority],
        "chance": 1 / len(labels),
        "seeds": [{k: v for k, v in s.items() if k != "per_class"} for s in seeds],
        "truncated": sum(s["truncated"] for s in seeds),
    }
    if config.calibrate:
        raw_acc, raw_std = _mean_std([s["uncalibrated"]["accuracy"] for s in seeds])
        result["uncalibrated"] = {"accuracy": raw_acc, "accuracy_std": raw_std}
    runs = len(seeds) if config.shots else 1
    result.update(
        labels={label: list(words) for label, words in zip(labels, fmt.verbaliser.words, strict=True)},
        template=fmt.template,
        normalize=config.normalize,
        combine=config.combine,
        balanced=config.balanced,
        examples_per_s=runs * len(true) / wall if wall > 0 else math.inf,
    )
    return result


def prompt(config: PromptConfig, out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score `config.data` by prompting the run's language model; with `out`, also write examples.jsonl (one row
    per example and seed: prompt, scores, prediction, label), confusion.png (summed over seeds) and result.json."""
    fmt = config.format()
    data = read_prompt_data(config, fmt.verbaliser)  # bad data fails before the model is loaded
    # Padded batches need attention with a padding mask: sdpa, and rotary positions from the PyTorch code.
    model, tokenizer = load_language_model(config.run, config.checkpoint, config.device, attention="sdpa", fused=())
    result, rows = evaluate_prompts(model, tokenizer, data, config, progress=progress)
    if out is not None:
        write_outputs(Path(out), result, rows, fmt.verbaliser.labels)
    return result


def write_outputs(out: Path, result: dict[str, Any], rows: list[dict[str, Any]], labels: Sequence[str]) -> None:
    from train.finetune.metrics import confusion_matrix, plot_confusion_matrix, save_report
    from train.runtime.files import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "examples.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    true = [labels.index(r["label"]) for r in rows]
    pred = [labels.index(r["prediction"]) for r in rows]
    plot_confusion_matrix(confusion_matrix(true, pred, len(labels)), labels, out / "confusion.png")
    save_report(result, out / "result.json")


def describe(result: dict[str, Any], title: str) -> str:
    """The result as the table `cgpt prompt` prints."""
    from train.finetune.metrics import format_report

    seeds = [s["seed"] for s in result["seeds"]]
    setting = f"{result['shots']}-shot" + (" balanced" if result["balanced"] and result["shots"] else "")
    setting += ", calibrated" if result["calibrated"] else ""
    spread = f" +- {result['accuracy_std']:.4f} over seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else ""
    lines = [
        f"{title}: {result['n']} examples, {setting}, normalize {result['normalize']}, "
        f"{result['examples_per_s']:.1f} examples/s",
        f"accuracy {result['accuracy']:.4f}{spread}   macro_f1 {result['macro_f1']:.4f}",
    ]
    if result["calibrated"]:
        lines.append(f"uncalibrated accuracy {result['uncalibrated']['accuracy']:.4f}")
    lines.append(
        f"baselines: chance {result['chance']:.4f}   majority {result['majority_baseline']:.4f} "
        f"(always {result['majority_label']!r})"
    )
    per_class = result["per_class"].values()
    macro = {k: float(np.mean([row[k] for row in per_class])) for k in ("precision", "recall", "f1")}
    report = {
        "per_class": result["per_class"],
        "macro": {**macro, "support": result["n"]},
        "accuracy": result["accuracy"],
    }
    lines.append(format_report(report))
    if result["truncated"]:
        lines.append(f"{result['truncated']} prompts cut to the context (demonstrations dropped first)")
    return "\n".join(lines)
