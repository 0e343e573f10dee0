"""Chinchilla scaling laws: how to split a training budget between parameters N and tokens D.

Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (DeepMind, arXiv 2203.15556): for a
budget of C ~= 6ND training FLOPs, N and D should grow in equal proportion, about 20 tokens per parameter.
Chinchilla itself is 70B parameters on 1.4T tokens, Gopher's budget (~5.76e23 FLOPs), and beats Gopher (280B).

Two allocations (`ALLOCATIONS`):

- `rule20`: D = 20 N, the paper's headline (Table 3 gives 8.0B tokens for 400M parameters, 20.2B for 1B).
- `approach3` (the default): the paper's parametric fit (Section 3.3)

      L(N, D) = E + A / N^alpha + B / D^beta

  minimised on the line C = 6ND has the closed form (Section 3.3, Eq. 4)

      G = (alpha A / (beta B))^(1 / (alpha + beta))
      N_opt = G (C/6)^(beta / (alpha + beta)),     D_opt = (C/6)^(alpha / (alpha + beta)) / G

  with three constant sets (`CONSTANTS`): the paper's body (rounded), the paper's source (unrounded: only
  these reproduce its own Table A3), and Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt",
  Epoch AI, arXiv 2404.10102), the default: refitted on the paper's own data, theirs is the set that gives ~20
  tokens per parameter at the Gopher budget (72B / 1.33T), consistent with Approaches 1 and 2.

Which law (`load_law`): `--constants` names one of these published sets, or gives the path of a `summary.json`
written by `cgpt fit` (train/planner/fit.py), whose Approach 3 constants were fitted on the user's own runs. A
`Law` says which kind it is, because its predicted loss means different things: the paper's and the
replication's laws give nats per token on MassiveText with a 32k vocabulary - not a forecast for other data - and
only a law fitted on this data forecasts this data's loss.

A budget can be given as C (`--flops`), as N (`--params`) or as D (`--tokens`). The last two are answered by
the same frontier: its point whose N_opt is N (or whose D_opt is D), i.e. the budget for which a model of
that size is compute-optimal, so all three inputs lead to the same (N, D) pairs; `rule20` uses D = 20 N.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from model.config import GPTConfig
from model.flops import chinchilla_flops_per_token
from train.errors import CgptError

TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022, Table 3: tokens ~= 20 x parameters
ALLOCATIONS = ("approach3", "rule20")
BUDGET_KINDS = ("flops", "params", "tokens")


def si(x: float) -> str:
    """1.23M, 4.5B, 70k: three significant digits and a suffix."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise CgptError(f"{name}={value!r} is not allowed: expected a positive finite number")


@dataclass(frozen=True)
class LossConstants:
    """The fitted loss L(N, D) = E + A / N^alpha + B / D^beta (nats per token on the paper's MassiveText)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for name in ("E", "A", "B", "alpha", "beta"):
            check_positive(name, getattr(self, name))


CONSTANTS: dict[str, LossConstants] = {
    # Hoffmann et al. 2022, Eq. (10) as printed in the body.
    "rounded": LossConstants(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    # The same fit to more digits, from the paper's LaTeX source; these reproduce Table A3's Approach 3.
    "unrounded": LossConstants(E=1.69337, A=406.401, B=410.723, alpha=0.33917084, beta=0.2849083),
    # Besiroglu et al. 2024 (arXiv 2404.10102): the fit redone on data recovered from the paper's Figure 4.
    "besiroglu": LossConstants(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
}
DEFAULT_CONSTANTS = "besiroglu"
LAW_KINDS = ("paper", "replication", "fitted")
CONSTANT_KINDS = {"rounded": "paper", "unrounded": "paper", "besiroglu": "replication"}
# the range of the paper's 400+ runs (Section 1), which the replication refitted
PAPER_PARAMS, PAPER_TOKENS = (70e6, 16e9), (5e9, 500e9)


def get_constants(name: str) -> LossConstants:
    if name not in CONSTANTS:
        raise CgptError(f"constants={name!r} is not known: expected one of {sorted(CONSTANTS)}")
    return CONSTANTS[name]


@dataclass(frozen=True)
class Law:
    """A loss law and where it comes from: `kind` says what its predicted loss means for the user's data."""

    name: str  # a key of CONSTANTS, or the path of a fit's summary.json
    kind: str  # paper | replication | fitted
    constants: LossConstants
    fit_params: tuple[float, float]  # the range of N (embeddings included) and D its runs covered
    fit_tokens: tuple[float, float]

    def __post_init__(self) -> None:
        if self.kind not in LAW_KINDS:
            raise CgptError(f"law kind={self.kind!r} is not known: expected one of {list(LAW_KINDS)}")

    def basis(self) -> str:
        """One sentence: what a loss this law predicts is (and is not)."""
        (n0, n1), (d0, d1) = self.fit_params, self.fit_tokens
        span = f"{si(n0)}-{si(n1)} parameters, {si(d0)}-{si(d1)} tokens"
        if self.kind == "fitted":
            return f"a law fitted on your own runs ({self.name}; {span}): a forecast for data like theirs"
        who = {
            "paper": "the paper's law (Hoffmann et al. 2022)",
            "replication": "Besiroglu et al. 2024's refit of the paper's law",
        }
        return f"{who[self.kind]}, fitted on MassiveText ({span}): not a forecast for your data"


def load_law(spec: str) -> Law:
    """The law `--constants` names: a key of CONSTANTS, or the path of a summary.json written by `cgpt fit`."""
    if spec in CONSTANTS:
        return Law(spec, CONSTANT_KINDS[spec], CONSTANTS[spec], PAPER_PARAMS, PAPER_TOKENS)
    path = Path(spec)
    if not path.is_file():
        raise CgptError(
            f"constants={spec!r} is neither a known set ({sorted(CONSTANTS)}) nor a file (a fit's summary.json)"
        )
    try:
        fit = json.loads(path.read_text())
        values = {k: fit[k] for k in ("E", "A", "B", "alpha", "beta")}
        fit_range = fit["fit_range"]
        n, d = tuple(map(float, fit_range["params"])), tuple(map(float, fit_range["tokens"]))
        params = fit["params"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CgptError(f"{path}: not a summary.json written by `cgpt fit` ({type(err).__name__}: {err})") from None
    if any(v is None for v in values.values()):
        raise CgptError(f"{path}: holds no Approach 3 fit (E, A, B, alpha, beta); refit with --approach 3 or both")
    if params != "total":
        raise CgptError(
            f"{path}: fitted with --params {params}; plans count every parameter (refit with --params total)"
        )
    try:
        constants = LossConstants(**{k: float(v) for k, v in values.items()})
    except CgptError as err:
        raise CgptError(f"{path}: {err}") from None
    return Law(str(spec), "fitted", constants, n, d)


# --- the law and its frontier ----------------------------------------------------------------------------


def predicted_loss(n_params: float, n_tokens: float, constants: LossConstants) -> float:
    """L(N, D) = E + A / N^alpha + B / D^beta: the fit's loss for N parameters trained on D tokens."""
    check_positive("params", n_params)
    check_positive("tokens", n_tokens)
    c = constants
    return c.E + c.A / n_params**c.alpha + c.B / n_tokens**c.beta


def flops_6nd(n_params: float, n_tokens: float) -> float:
    """Training FLOPs by the paper's approximation C = 6ND (Kaplan et al. 2020): 2ND forward, 4ND backward."""
    return 6.0 * n_params * n_tokens


def flops_appendix_f(config: GPTConfig, n_tokens: float) -> float:
    """Training FLOPs by the paper's Appendix F count as printed (embeddings and final logits included)."""
    return chinchilla_flops_per_token(config, config.block_size, embeddings=True) * n_tokens


def _g(c: LossConstants) -> float:
    return (c.alpha * c.A / (c.beta * c.B)) ** (1.0 / (c.alpha + c.beta))


def compute_optimal(flops: float, constants: LossConstants) -> tuple[float, float]:
    """(N_opt, D_opt) minimising L(N, D) subject to 6ND = C: the closed form in the module docstring."""
    check_positive("flops", flops)
    c, g = constants, _g(constants)
    a = c.beta / (c.alpha + c.beta)  # N_opt ~ C^a
    b = c.alpha / (c.alpha + c.beta)  # D_opt ~ C^b, a + b = 1
    return g * (flops / 6.0) ** a, (flops / 6.0) ** b / g


def frontier_flops_for_params(n_params: float, constants: LossConstants) -> float:
    """The budget C whose compute-optimal model has N parameters: N_opt(C) = N solved for C."""
    check_positive("params", n_params)
    c = constants
    return 6.0 * (n_params / _g(c)) ** ((c.alpha + c.beta) / c.beta)


def frontier_flops_for_tokens(n_tokens: float, constants: LossConstants) -> float:
    """The budget C whose compute-optimal run sees D tokens: D_opt(C) = D solved for C."""
    check_positive("tokens", n_tokens)
    c = constants
    return 6.0 * (n_tokens * _g(c)) ** ((c.alpha + c.beta) / c.alpha)


def tokens_for_params(n_params: float, rule: float = TOKENS_PER_PARAM) -> float:
    """The rule of thumb: D = rule x N (20 by default)."""
    check_positive("params", n_params)
    check_positive("rule", rule)
    return rule * n_params


# --- allocation: a budget of one kind -> a target (N, D) --------------------------------------------------


def check_allocation(allocation: str) -> None:
    if allocation not in ALLOCATIONS:
        raise CgptError(f"allocation={allocation!r} is not known: expected one of {list(ALLOCATIONS)}")


def target_params(kind: str, value: float, allocation: str, constants: LossConstants) -> float:
    """The model size N a budget of `kind` (flops | params | tokens) calls for."""
    check_allocation(allocation)
    check_positive(kind, value)
    if kind == "params":
        return float(value)
    if kind == "flops":
        if allocation == "rule20":  # C = 6 N (20 N)
            return math.sqrt(value / (6.0 * TOKENS_PER_PARAM))
        return compute_optimal(value, constants)[0]
    if kind == "tokens":
        if allocation == "rule20":
            return value / TOKENS_PER_PARAM
        return compute_optimal(frontier_flops_for_tokens(value, constants), constants)[0]
    raise CgptError(f"budget kind={kind!r} is not known: expected one of {list(BUDGET_KINDS)}")


def tokens_for(kind: str, value: float, n_params: int, allocation: str, constants: LossConstants) -> float:
    """The tokens D for the model actually chosen (N = `n_params`, after rounding to a shape).

    A FLOP budget stays fixed (D = C / 6N); a token budget stays fixed; a parameter budget takes the
    allocation's D for that N (20 N, or the frontier's D_opt at the budget where N is optimal).
    """
    check_allocation(allocation)
    check_positive(kind, value)
    if kind == "flops":
        return value / (6.0 * n_params)
    if kind == "tokens":
        return float(value)
    if kind == "params":
        if allocation == "rule20":
            return tokens_for_params(n_params)
        return compute_optimal(frontier_flops_for_params(n_params, constants), constants)[1]
    raise CgptError(f"budget kind={kind!r} is not known: expected one of {list(BUDGET_KINDS)}")
