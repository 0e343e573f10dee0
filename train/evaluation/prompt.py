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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.gpt import GPT
from train.data.tokenizer import Tokenizer
from train.errors import CgptError
from train.evaluation.fewshot import Built, DemoPool, PromptFormat, build, encode
from train.evaluation.loglik import Request, score_groups, score_groups_reference
from train.evaluation.prompt_report import metrics, summarise, write_outputs
from train.evaluation.templates import Verbaliser, resolve_template
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
        same = config.demos is None or Path(config.demos).resolve() == Path(config.data).resolve()
        pool = DemoPool(everything, config.data, True) if same else DemoPool(read(config.demos), config.demos, False)
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


def build_prompts(
    tokenizer: Tokenizer, data: PromptData, config: PromptConfig, fmt: PromptFormat, seed: int, block_size: int
) -> list[Built]:
    """Each example's requests for one seed: its own demonstrations, cut to the context."""
    labels = fmt.verbaliser.labels
    built = []
    for i, ex in enumerate(data.examples):
        demos = data.pool.draw(ex, i, seed, config.shots, config.balanced, labels) if data.pool else []
        built.append(build(fmt, tokenizer, ex, demos, block_size))
    return built


def score_prompts(
    model: GPT,
    built: Sequence[Built],
    batch_size: int,
    scorer: str = "cached",
    advance: Callable[[int], object] = print,
) -> tuple[list[list[float]], float]:
    """(every request's log-likelihood, example by example; the seconds it took) by the fast path ("cached") or
    the reference ("reference"); bf16 autocast on a GPU that has it."""
    if scorer not in SCORERS:
        raise ValueError(f"scorer={scorer!r}: expected one of {SCORERS}")
    device = next(model.parameters()).device
    groups = [b.requests for b in built]
    start = time.perf_counter()
    with autocast(device, resolve_dtype("auto", device)):
        if scorer == "cached":
            scores = score_groups(model, groups, batch_size, advance)
        else:
            scores = score_groups_reference(model, groups, advance)
    return scores, time.perf_counter() - start


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
            built = build_prompts(tokenizer, data, config, fmt, seed, model.config.block_size)
            raw_scores, wall = score_prompts(model, built, config.batch_size, scorer, bar.update)
            walls.append(wall)
            scores = [
                label_scores(s, b.requests, fmt, config.normalize, config.combine)
                for s, b in zip(raw_scores, built, strict=True)
            ]
            final = [calibrated(s) if config.calibrate else s[0] for s in scores]
            pred = [int(np.argmax(f)) for f in final]
            entry = {"seed": seed, **metrics(true, pred, labels)}
            if config.calibrate:
                raw = metrics(true, [int(np.argmax(s[0])) for s in scores], labels)
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


def load_prompt_model(config: PromptConfig) -> tuple[GPT, Tokenizer]:
    """The run's language model for scoring: padded batches need one rotary position per token and row (the
    PyTorch rope, not the fused kernel); every attention backend takes the padding mask."""
    return load_language_model(config.run, config.checkpoint, config.device, attention="auto", fused=())


def prompt(config: PromptConfig, out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score `config.data` by prompting the run's language model; with `out`, also write examples.jsonl (one row
    per example and seed: prompt, scores, prediction, label), confusion.png (summed over seeds) and result.json."""
    fmt = config.format()
    data = read_prompt_data(config, fmt.verbaliser)  # bad data fails before the model is loaded
    model, tokenizer = load_prompt_model(config)
    result, rows = evaluate_prompts(model, tokenizer, data, config, progress=progress)
    if out is not None:
        write_outputs(Path(out), result, rows, fmt.verbaliser.labels)
    return result
