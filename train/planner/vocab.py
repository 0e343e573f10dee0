"""The vocabulary as part of the plan: a BPE size for a compute budget (`cgpt prepare --tokenizer train:auto`).

At small budgets the vocabulary decides the model: a 4096-token embedding of a 48-wide model is 196k
parameters, most of a 237k-parameter plan, leaving almost nothing for the transformer. Tao et al. 2024
("Scaling Laws with Vocabulary: Larger Models Deserve Larger Vocabularies", NeurIPS) find by three methods
that compute-optimal vocabulary parameters grow more slowly than the non-vocabulary parameters:

    N_v = K * N_nv^GAMMA,   GAMMA = 0.83,   N_v = V * n_embd  (the tied embedding)

K is set so that the law gives their headline prediction, 216K tokens for Llama2-70B (n_embd 8192, about 68.5B
non-vocabulary parameters). Their fits span 33M to 3B parameters; this project's CPU budgets sit far below, so
this is an extrapolation, and the result is only a size for the BPE trainer: rounded to a multiple of 64 and
at least MIN_VOCAB (256 bytes, the two special tokens, a few merges). The plan and the vocabulary depend on
each other (the shape is chosen for N including the embedding), so `vocab_for_flops` iterates the two to a
fixed point, which takes a few rounds.
"""

from __future__ import annotations

from model.flops import param_counts
from train.planner import scaling
from train.planner.plan import make_plan

GAMMA = 0.83  # Tao et al. 2024: N_v^opt grows as N_nv^0.83
K = 216_000 * 8192 / 68.5e9**GAMMA  # through their Llama2-70B prediction (216K tokens)
MIN_VOCAB = 320  # 256 byte tokens + <|endoftext|> + <|pad|> + some merges, rounded to 64
START = 4096


def vocab_for_params(non_embedding_params: float, n_embd: int) -> int:
    """The vocabulary size the law gives a model with this many non-embedding parameters and this width."""
    return max(MIN_VOCAB, round(K * non_embedding_params**GAMMA / n_embd / 64) * 64)


def vocab_for_flops(
    flops: float, block_size: int, constants: str = scaling.DEFAULT_CONSTANTS, max_rounds: int = 12
) -> int:
    """The vocabulary size for a training budget of `flops`: the fixed point of plan(V) -> law -> V."""
    vocab, seen = START, []
    for _ in range(max_rounds):
        plan = make_plan("flops", flops, vocab, block_size, constants=constants)
        wanted = vocab_for_params(param_counts(plan.model_config()).non_embedding, plan.n_embd)
        if wanted == vocab or wanted in seen:  # converged, or a two-step cycle: take the later value
            return wanted
        seen.append(vocab)
        vocab = wanted
    return vocab
