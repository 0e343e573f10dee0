"""Checkpoints: written atomically, read without executing pickled code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts saved with `torch.save` and read with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects: a checkpoint from a stranger cannot run
code on your machine. Writing goes to a temporary file in the same directory, is fsynced, then renamed over the
target, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from model import GPT, ConfigError, GPTConfig
from train.errors import CgptError
from train.runtime.files import atomic_write

FORMAT = "chinchilla-gpt/checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save `state` (plain types and tensors only) atomically, stamped with the format and version."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; a clear error if it is missing, corrupt or not ours."""
    path = Path(path)
    if not path.is_file():
        raise CgptError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns (in 3 lines) about foreign pickles it is about to refuse
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused an object: say so in one line
        found = re.search(r"GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", str(err))
        what = f" ({found.group(1) or found.group(2)})" if found else ""
        raise CgptError(
            f"{path}: refused: the file holds a pickled object{what}, which could run code; chinchilla-gpt "
            "loads only tensors and plain data (weights_only=True)"
        ) from None
    except Exception as err:  # truncated or corrupt file, not a torch file, ...
        first = re.split(r"(?<=\.)\s", str(err).strip(), maxsplit=1)[0]  # the first sentence, one line
        raise CgptError(f"{path}: not a loadable checkpoint, truncated or corrupt ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CgptError(f"{path}: not a chinchilla-gpt checkpoint (expected format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise CgptError(f"{path}: checkpoint version {state.get('version')} is not supported (expected {VERSION})")
    return state


def model_from_state(state: dict[str, Any], where: str | Path, **config_overrides: Any) -> GPT:
    """Rebuild a GPT from a loaded checkpoint dict; errors name the checkpoint file."""
    try:
        config = GPTConfig.from_dict({**state["model_config"], **config_overrides})
    except (KeyError, ConfigError, TypeError) as err:
        raise CgptError(f"{where}: bad model_config in checkpoint ({err})") from None
    model = GPT(config)
    weights = state["model"]
    if "head" in state:  # a fine-tuned TaskModel: keep the backbone, drop the head
        weights = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
    load_weights(model, weights, where)
    return model


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: str | Path) -> None:
    """load_state_dict with a one-line error that names the file and the first mismatching tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape of {k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}")
        raise CgptError(f"{where}: checkpoint does not match the model ({'; '.join(parts)})")
    model.load_state_dict(weights)


# --- random number generator states: part of every training checkpoint, so a resumed run is exact ---------


def capture_rng() -> dict[str, Any]:
    """Every global RNG state (torch CPU and CUDA, numpy, python) as weights-only-loadable types."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(x: Any) -> Any:
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
