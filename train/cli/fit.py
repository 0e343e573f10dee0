"""`cgpt fit`: the Chinchilla scaling law fitted to your runs - Approaches 2 and 3 of Hoffmann et al. 2022, with
bootstrap intervals (train/planner/fit.py). No torch, no GPU: seconds on a CPU.

    cgpt fit --runs sweep/runs.jsonl                          # the table, beside the paper's and the replication's
    cgpt fit --runs a/runs.jsonl b/runs.jsonl --out fitted    # summary.json and the plots in fitted/
    cgpt fit --runs published.csv --approach 3 --json         # any JSONL or CSV of params, tokens or flops, loss

A runs file holds one run per JSON line or CSV row: params (every parameter), tokens and/or flops (the other is
derived by C = 6ND), loss; optionally params_non_embedding (for --params non-embedding) and budget.
`cgpt plan --constants fitted/summary.json` then plans with the fitted law.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from train.cli import flags


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fit",
        help="fit the Chinchilla scaling law (Approaches 2 and 3) to your runs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--runs", nargs="+", required=True, metavar="F", help="runs files: JSONL (a sweep's runs.jsonl) or CSV"
    )
    p.add_argument("--approach", choices=["2", "3", "both"], default="both", help="which fits (default both)")
    p.add_argument(
        "--bootstrap", type=flags.nonneg_int, default=1000, metavar="N", help="resamples for the intervals (1000)"
    )
    p.add_argument(
        "--params",
        choices=["total", "non-embedding"],
        default="total",
        help="N counts every parameter (Chinchilla, the default; plans need it) or all but the embeddings (Kaplan)",
    )
    p.add_argument("--seed", type=flags.integer, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument("--json", action="store_true", help="print summary.json's contents as one JSON object")
    p.add_argument("--out", metavar="DIR", help="write summary.json and the plots (PNG) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.planner.fitreport import fit_files, format_fit

    summary = fit_files(args.runs, args.out, args.approach, args.bootstrap, args.params, args.seed)
    print(json.dumps(summary, indent=2) if args.json else format_fit(summary))
    if args.out and not args.json:
        print(f"wrote {args.out}/summary.json" + "".join(f", {p}" for p in summary.get("plots", [])))
    return 0
