"""A plan as the table `cgpt plan` prints: the budget, N and D, the shape, the schedule, the predicted loss (and
whose law it is: the paper's, not a forecast for your data, or one fitted on your runs), and notes where the plan
is outside what the law was fitted on (Hoffmann et al. 2022).
"""

from __future__ import annotations

from model.flops import param_counts
from train.planner import scaling
from train.planner.plan import Plan

CHINCHILLA = dict(params=70e9, tokens=1.4e12, flops=5.76e23)  # Hoffmann et al. 2022, Table 4 / Gopher's budget


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} days"


def _budget(plan: Plan) -> str:
    return f"{plan.budget_value:.3g}" if plan.budget in ("flops", "minutes") else scaling.si(plan.budget_value)


def _shape(plan: Plan) -> str:
    layers = _count(plan.n_layer, "layer")
    heads = f"{plan.n_head} heads of {plan.n_embd // plan.n_head}"
    arch = f"{plan.mlp}, {plan.norm}, {plan.positions} positions"
    return f"{layers} x {plan.n_embd} wide, {heads}; vocab {plan.vocab_size}, context {plan.block_size}; {arch}"


def _notes(plan: Plan, law: scaling.Law | None) -> list[str]:
    notes = []
    embeddings = plan.params - param_counts(plan.model_config()).non_embedding
    if plan.params > 1.2 * plan.target_params:
        notes.append(
            f"the budget wants N = {scaling.si(plan.target_params)}, but the smallest model with a "
            f"{plan.vocab_size}-token vocabulary has {scaling.si(plan.params)}: try a smaller --vocab-size"
        )
    if plan.params < plan.target_params / 1.2:
        notes.append(
            f"the budget wants N = {scaling.si(plan.target_params)}, more than the largest shape the planner builds "
            f"({plan.n_layer} layers x {plan.n_embd}, {scaling.si(plan.params)}): this plan uses that shape and "
            "puts the rest of the budget into tokens"
        )
    if embeddings > plan.params / 2:
        notes.append(f"embeddings are {embeddings / plan.params:.0%} of N: a small model wants a small vocabulary")
    if law is None:
        return notes
    (n0, n1), (d0, d1) = law.fit_params, law.fit_tokens
    if not (n0 <= plan.params <= n1 and d0 <= plan.tokens <= d1):
        span = f"{scaling.si(n0)}-{scaling.si(n1)} parameters, {scaling.si(d0)}-{scaling.si(d1)} tokens"
        notes.append(f"the predicted loss extrapolates the fit (made on {span})")
    return notes


def format_table(plan: Plan, law: scaling.Law | None = None) -> str:
    """The table; `law` (the plan's, with its fit range) adds the extrapolation note. A published law is found
    by its name; a fitted one is not reread from its file here."""
    if law is None and plan.law != "fitted":
        law = scaling.load_law(plan.constants)
    constants = f"constants fitted in {plan.constants}" if plan.law == "fitted" else f"{plan.constants} constants"
    source = "rule of thumb D = 20 N" if plan.allocation == "rule20" else f"Approach 3, {constants}"
    est = (
        "n/a (cgpt plan --minutes measures this machine)"
        if plan.est_seconds is None
        else f"{_duration(plan.est_seconds)} training at {plan.flops_per_s:.3g} FLOP/s measured"
        + ("" if plan.overhead_s is None else
           f" + {_duration(plan.overhead_s)} for the rest (start, probe, evaluation, checkpoints)")
    )  # fmt: skip
    rows = [
        ("budget", f"--{plan.budget} {_budget(plan)}  ({source}; Hoffmann et al. 2022)"),
        ("params N", f"{plan.params:,}  ({scaling.si(plan.params)}; target {scaling.si(plan.target_params)})"),
        ("tokens D", f"{plan.tokens:,}  ({scaling.si(plan.tokens)})"),
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
            f"{plan.predicted_loss:.3f} nats/token: {plan.predicted_loss_basis}",
        ),
        ("est. time", est),
        ("dtype", plan.dtype + ("  (the faster the probe measured)" if plan.budget == "minutes" else "")),
    ]
    lines = [f"{name:<15} {value}" for name, value in rows]
    c = CHINCHILLA
    lines.append(
        f"{'context':<15} Chinchilla: {scaling.si(c['params'])} params on {scaling.si(c['tokens'])} tokens, "
        f"{c['flops']:.3g} FLOPs; this plan is {plan.flops / c['flops']:.2g}x that compute"
    )
    lines += [f"{'note':<15} {note}" for note in _notes(plan, law)]
    return "\n".join(lines)
