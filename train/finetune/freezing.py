"""Which parameters a fine-tune trains, and at what learning rate.

Freezing (`--freeze`), over a TaskModel's parameter names:
  none          everything trains (full fine-tuning, GPT-1: Radford et al. 2018)
  embeddings    the token (and position) embeddings are frozen. With tied embeddings the LM head is the same
                tensor (Press & Wolf 2017), so it is frozen with them.
  bottom:K      the embeddings and blocks 0 .. K-1 are frozen; the top n_layer - K blocks train
  all-but-head  only the head trains: a linear probe of the frozen features (Alain & Bengio 2016)
The head always trains. Frozen parameters get requires_grad=False, so they get no gradient and
`train.optim.param_groups` leaves them out of the optimizer (no weight decay moves them either).

Layer-wise learning-rate decay (Howard & Ruder 2018's discriminative fine-tuning, in the form of ELECTRA,
Clark et al. 2020): with decay F and L = n_layer, block i trains at lr * F^(L - i), the embeddings at
lr * F^(L + 1), and the final norm and the head at lr. Lower layers hold more general features and move less.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

from train.errors import CgptError

FREEZE_CHOICES = "none | embeddings | bottom:K | all-but-head"
_BLOCK = re.compile(r"^backbone\.transformer\.h\.(\d+)\.")
_EMBEDDINGS = ("backbone.transformer.wte.", "backbone.transformer.wpe.", "backbone.lm_head.")


def check_freeze(spec: str) -> str:
    """`spec` if it is one of FREEZE_CHOICES; a one-line error naming the choices otherwise."""
    kind, _, k = spec.partition(":")
    if spec in ("none", "embeddings", "all-but-head") or (kind == "bottom" and k.isdigit()):
        return spec
    raise CgptError(f"freeze={spec!r}: expected one of {FREEZE_CHOICES} (K a number of blocks)")


def is_frozen(name: str, spec: str) -> bool:
    """Whether the TaskModel parameter `name` is frozen under `spec`."""
    if spec == "none" or name.startswith("head."):
        return False
    if spec == "all-but-head":
        return True
    if name.startswith(_EMBEDDINGS):
        return True
    block = _BLOCK.match(name)
    if spec == "embeddings" or block is None:
        return False
    return int(block.group(1)) < int(spec.partition(":")[2])  # bottom:K


def freeze(model: nn.Module, spec: str, n_layer: int) -> list[str]:
    """Set requires_grad=False on the parameters `spec` freezes; returns their names."""
    if check_freeze(spec).startswith("bottom:") and int(spec[len("bottom:") :]) > n_layer:
        raise CgptError(f"freeze={spec!r}: the model has only {n_layer} blocks")
    frozen = []
    for name, p in model.named_parameters():
        p.requires_grad_(not is_frozen(name, spec))
        if not p.requires_grad:
            frozen.append(name)
    return frozen


def layer_scales(model: nn.Module, decay: float, n_layer: int) -> dict[str, float]:
    """Parameter name -> learning-rate multiplier for layer-wise decay (1.0 for the norm and the head)."""
    scales = {}
    for name, _ in model.named_parameters():
        block = _BLOCK.match(name)
        if block is not None:
            scales[name] = decay ** (n_layer - int(block.group(1)))
        elif name.startswith(_EMBEDDINGS):
            scales[name] = decay ** (n_layer + 1)
        else:
            scales[name] = 1.0
    return scales
