"""A plan as the table `cgpt plan` prints: the budget, N and D, the shape, the schedule, the predicted loss, and
notes where the plan is outside what the law was fitted on (Hoffmann et al. 2022).
"""

from __future__ import annotations

from model.flops import param_counts
from train.planner.plan import Plan

CHINCHILLA = dict(params=70e9, tokens=1.4e12, flops=5.76e23)  # Hoffmann et al. 2022, Table 4 / Gopher's budget
FIT_PARAMS, FIT_TOKENS = (70e6, 16e9), (5e9, 500e9)  # the range of the paper's 400+ runs (Section 1)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} days"


def _budget(plan: Plan) -> str:
    return f"{plan.budget_value:.3g}" if plan.budget in ("flops", "minutes") else _si(plan.budget_value)


def _shape(plan: Plan) -> str:
    layers = _count(plan.n_layer, "layer")
    heads = f"{plan.n_head} heads of {plan.n_embd // plan.n_head}"
    arch = f"{plan.mlp}, {plan.norm}, {plan.positions} positions"
    return f"{layers} x {plan.n_embd} wide, {heads}; vocab {plan.vocab_size}, context {plan.block_size}; {arch}"


def _notes(plan: Plan) -> list[str]:
    notes = []
    embeddings = plan.params - param_counts(plan.model_config()).non_embedding
    if plan.params > 1.2 * plan.target_params:
        notes.append(
            f"the budget wants N = {_si(plan.target_params)}, but the smallest model with a "
            f"{plan.vocab_size}-token vocabulary has {_si(plan.params)}: try a smaller --vocab-size"
        )
    if plan.params < plan.target_params / 1.2:
        notes.append(
            f"the budget wants N = {_si(plan.target_params)}, more than the largest shape the planner builds "
            f"({plan.n_layer} layers x {plan.n_embd}, {_si(plan.params)}): this plan uses that shape and puts the "
            "rest of the budget into tokens"
        )
    if embeddings > plan.params / 2:
        notes.append(f"embeddings are {embeddings / plan.params:.0%} of N: a small model wants a small vocabulary")
    if not (FIT_PARAMS[0] <= plan.params <= FIT_PARAMS[1] and FIT_TOKENS[0] <= plan.tokens <= FIT_TOKENS[1]):
        notes.append("the predicted loss extrapolates the fit (made on 70M-16B parameters, 5B-500B tokens)")
    return notes


def format_table(plan: Plan) -> str:
    source = "rule of thumb D = 20 N" if plan.allocation == "rule20" else f"Approach 3, {plan.constants} constants"
    est = (
        "n/a (cgpt plan --minutes measures this machine)"
        if plan.est_seconds is None
        else f"{_duration(plan.est_seconds)} at {plan.flops_per_s:.3g} FLOP/s measured"
    )
    rows = [
        ("budget", f"--{plan.budget} {_budget(plan)}  ({source}; Hoffmann et al. 2022)"),
        ("params N", f"{plan.params:,}  ({_si(plan.params)}; target {_si(plan.target_params)})"),
        ("tokens D", f"{plan.tokens:,}  ({_si(plan.tokens)})"),
        ("D / N", f"{plan.tokens / plan.params:.3g} tokens per parameter (Chinchilla: 20)"),
        ("compute C", f"{plan.flops:.3g} FLOPs = 6ND  (Appendix F count: {plan.flops_appendix_f:.3g})"),
        ("shape", _shape(plan)),
        ("steps", f"{plan.steps:,}  (warmup {plan.warmup_steps:,}, then cosine decay over the rest)"),
        (
            "batch",
            f"{_count(plan.batch_size, 'sequence')} x {plan.grad_accum} accumulation x {plan.block_size}"
            f" tokens = {plan.batch_tokens:,} tokens",
        ),
        ("learning rate", f"{plan.lr:.2e} peak -> {plan.min_lr:.2e}"),
        (
            "predicted loss",
            f"{plan.predicted_loss:.3f} nats/token on the fit's data (MassiveText), not yours",
        ),
        ("est. time", est),
    ]
    lines = [f"{name:<15} {value}" for name, value in rows]
    c = CHINCHILLA
    lines.append(
        f"{'context':<15} Chinchilla: {_si(c['params'])} params on {_si(c['tokens'])} tokens, "
        f"{c['flops']:.3g} FLOPs; this plan is {plan.flops / c['flops']:.2g}x that compute"
    )
    lines += [f"{'note':<15} {note}" for note in _notes(plan)]
    return "\n".join(lines)
