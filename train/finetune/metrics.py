"""Evaluation metrics: accuracy, per-class precision/recall/F1 with their macro average, entity-level F1.

Per class c: precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2PR / (P + R), each 0 when its
denominator is 0 (as scikit-learn's zero_division=0); macro-F1 is the unweighted mean over classes.
Entity scores follow conlleval, the CoNLL-2000/2003 shared-task script (Tjong Kim Sang & De Meulder 2003):
an entity counts only if its type and both boundaries match exactly; scores are micro-averaged over entities.
An entity starts at B-X, or at I-X after O or after another type; it runs while I-X continues it. The same
rules read BIO and IOB1 tags.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Span = tuple[str, int, int]  # (type, start, end), end exclusive


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _check_lengths(y_true: Sequence[Any], y_pred: Sequence[Any]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no examples to score")


# --- classification ---------------------------------------------------------------------------------------


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    _check_lengths(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def classification_report(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> dict[str, Any]:
    """{"accuracy", "macro": {precision, recall, f1, support}, "per_class": {label: {...}}}; JSON-ready.

    `labels` fixes the classes and their order (default: every label seen in y_true or y_pred, sorted).
    """
    _check_lengths(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred), key=str) if labels is None else labels
    per_class = {}
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
        n_true, n_pred = sum(t == c for t in y_true), sum(p == c for p in y_pred)
        per_class[str(c)] = {**_prf(tp, n_pred, n_true), "support": n_true}
    k = max(len(per_class), 1)
    macro = {m: sum(row[m] for row in per_class.values()) / k for m in ("precision", "recall", "f1")}
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro": {**macro, "support": len(y_true)},
        "per_class": per_class,
    }


def format_report(report: dict[str, Any]) -> str:
    """A classification_report or entity_scores dict as an aligned text table."""
    rows = report.get("per_class") or report.get("per_type") or {}
    width = max([len(name) for name in rows] + [9])
    lines = [f"{'':<{width}}  precision  recall     f1  support"]
    for name, row in rows.items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.4f} {row['recall']:7.4f} {row['f1']:6.4f} {row['support']:8d}"
        )
    if "macro" in report:
        m = report["macro"]
        lines.append(
            f"{'macro avg':<{width}}  {m['precision']:9.4f} {m['recall']:7.4f} {m['f1']:6.4f} {m['support']:8d}"
        )
        lines.append(f"{'accuracy':<{width}}  {report['accuracy']:.4f}")
    else:
        lines.append(
            f"{'overall':<{width}}  {report['precision']:9.4f} {report['recall']:7.4f} "
            f"{report['f1']:6.4f} {report['support']:8d}"
        )
    return "\n".join(lines)


def save_report(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


# --- entities (conlleval) ----------------------------------------------------------------------------------


def entity_spans(tags: Sequence[str]) -> set[Span]:
    """The entities in one sentence's tags as (type, start, end) spans, end exclusive; conlleval's rules."""
    spans: set[Span] = set()
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):  # a final O closes a trailing entity
        prefix, _, tag_type = tag.partition("-")
        if prefix not in ("B", "I") or not tag_type:
            prefix, tag_type = "O", None
        continues = prefix == "I" and tag_type == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = tag_type, i
    return spans


def entity_scores(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro precision/recall/F1 over exact entity matches, overall and per type; support = true entities."""
    _check_lengths(true_seqs, pred_seqs)
    true: set[tuple[int, Span]] = set()
    pred: set[tuple[int, Span]] = set()
    for n, (t, p) in enumerate(zip(true_seqs, pred_seqs, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {n}: {len(t)} true tags but {len(p)} predicted")
        true |= {(n, s) for s in entity_spans(t)}
        pred |= {(n, s) for s in entity_spans(p)}
    hit = true & pred
    per_type = {}
    for kind in sorted({s[0] for _, s in true | pred}):
        n_hit, n_pred, n_true = (sum(s[0] == kind for _, s in spans) for spans in (hit, pred, true))
        per_type[kind] = {**_prf(n_hit, n_pred, n_true), "support": n_true}
    return {**_prf(len(hit), len(pred), len(true)), "support": len(true), "per_type": per_type}


# --- confusion matrix ------------------------------------------------------------------------------------


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts: row = true label index, column = predicted."""
    _check_lengths(y_true, y_pred)
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path) -> bool:
    """Save the matrix as a PNG; returns False, writing nothing, when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    except ImportError:
        return False
    size = 2 + 0.5 * len(labels)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
