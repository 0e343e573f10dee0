"""Checkpoints: atomic writes, weights-only loading, round trips and clear errors on mismatch."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from model import GPT, preset
from train.errors import CgptError
from train.runtime.checkpoint import load_checkpoint, model_from_state, save_checkpoint
from train.runtime.files import atomic_write


def _save(path: Path, model: GPT, **extra: object) -> None:
    """What the training loop stores for a model: its config, its weights, and extras."""
    save_checkpoint(path, {"model_config": model.config.to_dict(), "model": model.state_dict(), **extra})


def test_model_round_trip_keeps_weights_config_and_extras(tmp_path: Path) -> None:
    model = GPT(preset("debug", positions="learned"), torch.Generator().manual_seed(5))
    _save(tmp_path / "m.pt", model, tokenizer_hash="abc")
    state = load_checkpoint(tmp_path / "m.pt")
    loaded = model_from_state(state, tmp_path / "m.pt")
    assert loaded.config == model.config and state["tokenizer_hash"] == "abc"
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied after loading
    idx = torch.randint(0, 256, (1, 8))
    torch.testing.assert_close(model.eval()(idx)[0], loaded.eval()(idx)[0])


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "chinchilla-gpt/checkpoint", "x": Evil()}))
    with pytest.raises(CgptError, match="evil.pt: refused: the file holds a pickled object") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "weights_only=True" in str(info.value)


def test_missing_foreign_and_mismatched_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CgptError, match="nope.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CgptError, match="not a chinchilla-gpt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    _save(tmp_path / "m.pt", GPT(preset("debug")))
    with pytest.raises(CgptError, match=r"m.pt: checkpoint does not match the model \(shape of"):
        model_from_state(load_checkpoint(tmp_path / "m.pt"), tmp_path / "m.pt", n_embd=64)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")

    def boom(f: object) -> None:
        f.write(b"partial")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
