"""`cgpt prompt`: zero- and few-shot classification by prompting a language model (train/evaluation/prompt.py).

    cgpt prompt --run RUN --data dev.tsv --template sentiment --labels "0=negative,1=positive"
    cgpt prompt --run RUN --data dev.tsv --template "Review: {text}\\nSentiment:" --labels "0=bad,1=good|great" \\
        --shots 4 --demos train.tsv --balanced --calibrate --seeds 1,2,3 --json --out prompt-sst2

Any pretraining run (or a `finetune --task generate` run). Data: the classification files `cgpt finetune` reads
(TSV/CSV with a header, JSONL; --text-field, --label-field). --template: a built-in (sentiment, topic, qa),
@FILE, or the text itself with {text} where the input goes; \\n, \\t and \\\\ are decoded in templates and
delimiters given on the command line (not in @FILE). Each label is scored as the continuation
--target-delimiter + word after the prompt; a demonstration is the template filled with a pool example followed
by --target-delimiter and its label's first word, demonstrations joined by --fewshot-delimiter. --demos: the
demonstration pool (default: the --data file itself; the test example is never its own demonstration).

--json prints {"accuracy", "macro_f1", "n", "shots", "calibrated", "per_class", "majority_baseline", "chance",
"seeds": [{"seed", "accuracy", "macro_f1", "truncated", ...}], "accuracy_std", "truncated", ...}. --out DIR
writes examples.jsonl (per example and seed: prompt, scores, prediction, label), confusion.png and result.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from train.cli import flags
from train.errors import CgptError

if TYPE_CHECKING:
    from train.evaluation.prompt import PromptConfig


def seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,3, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0 such as 1,2,3, got {text!r}")
    return seeds


def add_prompt_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a PromptConfig (shared with `cgpt bench prompt`)."""
    flags.add_run_flags(p, "a pretraining run directory (or a `finetune --task generate` run)")
    p.add_argument("--data", required=True, help="labelled file to score (TSV/CSV with a header, or JSONL)")
    p.add_argument("--template", required=True, help="sentiment | topic | qa | @FILE | text with {text}")
    p.add_argument("--labels", required=True, help='a word per label, e.g. "0=negative,1=positive|great"')
    p.add_argument("--shots", type=flags.nonneg_int, default=0, help="demonstrations per prompt (default 0)")
    p.add_argument("--demos", help="demonstration pool (default: the --data file, never the test example)")
    p.add_argument("--balanced", action="store_true", help="demonstrations split evenly over the labels")
    p.add_argument("--calibrate", action="store_true", help="contextual calibration (Zhao et al. 2021)")
    p.add_argument("--seeds", type=seed_list, default=(0,), help="demonstration draws, e.g. 1,2,3 (default 0)")
    p.add_argument("--normalize", choices=("none", "tokens", "chars"), default="none", help="length normalisation")
    p.add_argument(
        "--combine", choices=("sum", "best"), default="sum", help="several words per label: summed probability or best"
    )
    p.add_argument("--batch-size", type=flags.positive_int, default=16, help="examples per batch (default 16)")
    p.add_argument("--limit", type=flags.positive_int, help="score only the first N examples")
    p.add_argument("--fewshot-delimiter", default="\\n\\n", help="between demonstrations (default \\n\\n)")
    p.add_argument("--target-delimiter", default=" ", help="between the prompt and the label word (default ' ')")
    p.add_argument("--text-field", help="the text column or JSON field (default: sentence, else text)")
    p.add_argument("--label-field", default="label", help="the label column or JSON field (default label)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prompt",
        help="zero- and few-shot classification by prompting a language model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_prompt_flags(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", help="also write examples.jsonl, confusion.png and result.json into this directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def prompt_config(args: argparse.Namespace) -> PromptConfig:
    """The PromptConfig the flags describe; escapes decoded in a template given as text and in the delimiters."""
    from train.evaluation.prompt import PromptConfig
    from train.evaluation.templates import BUILTIN_TEMPLATES, unescape

    template = args.template
    if not (template in BUILTIN_TEMPLATES or template.startswith("@")):
        template = unescape(template)
    return PromptConfig(
        run=args.run,
        data=args.data,
        template=template,
        labels=args.labels,
        shots=args.shots,
        demos=args.demos,
        balanced=args.balanced,
        calibrate=args.calibrate,
        seeds=args.seeds,
        normalize=args.normalize,
        combine=args.combine,
        batch_size=args.batch_size,
        limit=args.limit or 0,
        fewshot_delimiter=unescape(args.fewshot_delimiter),
        target_delimiter=unescape(args.target_delimiter),
        text_field=args.text_field,
        label_field=args.label_field,
        checkpoint=args.checkpoint,
        device=args.device,
    )


def run(args: argparse.Namespace) -> int:
    from train.evaluation.prompt import prompt
    from train.evaluation.prompt_report import describe

    if args.out and Path(args.run).resolve() in (Path(args.out).resolve(), *Path(args.out).resolve().parents):
        raise CgptError(f"--out {args.out}: write the results outside the run directory (its files stay as they are)")
    result = prompt(prompt_config(args), args.out, progress=not args.no_progress)
    print(json.dumps(result, indent=2) if args.json else describe(result, str(args.data)))
    return 0
