"""Loading prepared data: the token dataset, the random-window sampler for training, the sequential val pass.

`TokenDataset.open(dir)` maps a directory written by `prepare` (`train/data/prepare.py`, which this module does
not import: reading never depends on the writer): `train`
and `val` are 1-D memmaps of token ids, `meta` is meta.json, `tokenizer` the tokenizer it was made with.

`RandomWindowSampler` draws batch_size windows of block_size + 1 tokens at uniformly random offsets, as
nanoGPT's `get_batch` does; inputs are the first block_size tokens of a window, targets the last. Its
randomness is one `torch.Generator` seeded from `seed` through numpy's `SeedSequence`. Under data
parallelism every rank draws the same *global* batch of world_size x batch_size offsets and keeps its own
slice, so ranks see distinct windows and K ranks together train on exactly the batches one process with a
K-times larger batch would (the DDP test relies on it). `state_dict()` holds the generator state: a restored
sampler draws exactly the batches the original would have drawn.
(Evaluation walks a split in order: train/evaluation/lm.py.)

Shapes: B = batch_size, T = block_size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from train.data.shards import META_FILE, TRAIN_FILE, VAL_FILE, open_shard
from train.data.tokenizer import Tokenizer
from train.errors import CgptError


@dataclass(frozen=True)
class TokenDataset:
    directory: Path
    train: np.ndarray  # (N_train,) token ids, memory-mapped
    val: np.ndarray  # (N_val,)
    meta: dict
    tokenizer: Tokenizer

    @classmethod
    def open(cls, data_dir: str | Path) -> TokenDataset:
        directory = Path(data_dir)
        path = directory / META_FILE
        if not path.is_file():
            raise CgptError(f"{path}: not found; expected a directory written by `cgpt prepare`")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            expected = {split: int(meta["tokens"][split]) for split in ("train", "val")}
            tokenizer_hash = meta["tokenizer"]["hash"]
        except (ValueError, KeyError, TypeError) as err:
            raise CgptError(f"{path}: expected prepare's meta.json with tokens and tokenizer ({err})") from err
        train, val = open_shard(directory / TRAIN_FILE), open_shard(directory / VAL_FILE)
        for split, tokens in (("train", train), ("val", val)):
            if len(tokens) != expected[split]:
                raise CgptError(f"{directory}/{split}.bin: {len(tokens)} tokens, meta.json says {expected[split]}")
        tokenizer = Tokenizer.load(directory)
        if tokenizer.hash != tokenizer_hash:
            raise CgptError(
                f"{directory}: tokenizer files hash to {tokenizer.hash}, meta.json says "
                f"{tokenizer_hash}; the files were changed after `cgpt prepare`"
            )
        return cls(directory, train, val, meta, tokenizer)

    def check_tokenizer(self, expected_hash: str) -> None:
        """Refuse data made with another tokenizer than the model's (compared by tokenizer hash)."""
        actual = self.meta["tokenizer"]["hash"]
        if actual != expected_hash:
            raise CgptError(
                f"{self.directory}: prepared with tokenizer {self.meta['tokenizer']['name']!r} "
                f"(hash {actual}), but the model expects tokenizer hash {expected_hash}; "
                "prepare the data with the model's tokenizer"
            )


def to_device(batch: Tensor, device: torch.device | str) -> Tensor:
    """Move a CPU batch to `device`; on CUDA through pinned memory, so the copy can overlap compute."""
    device = torch.device(device)
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def _windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[Tensor, Tensor]:
    index = starts[:, None] + np.arange(block_size + 1)  # (B, T+1)
    window = torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # (B, T+1)
    return window[:, :-1].contiguous(), window[:, 1:].contiguous()  # (B, T), (B, T)


def _check_length(tokens: np.ndarray, block_size: int) -> None:
    if len(tokens) < block_size + 1:
        name = getattr(tokens, "filename", None) or "the token array"
        raise CgptError(
            f"{name}: {len(tokens)} tokens, fewer than one window of block_size + 1 = "
            f"{block_size + 1}; use more text or a smaller block_size"
        )


def stream_seed(seed: int) -> int:
    """A well-mixed 63-bit generator seed from a user seed (1, 2, 3 ... give unrelated streams)."""
    return int(np.random.SeedSequence([seed, 0]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class RandomWindowSampler:
    """Batches of random windows from `tokens`, reproducible from (seed, rank) and resumable exactly."""

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size={block_size}, batch_size={batch_size}: expected positive integers")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}: expected 0 <= rank < world_size={world_size}")
        _check_length(tokens, block_size)
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.generator = torch.Generator().manual_seed(stream_seed(seed))  # the same stream on every rank
        self.batches = 0  # batches drawn so far

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """(inputs, targets), each (B, T) int64; targets are the inputs shifted left by one token."""
        high = len(self.tokens) - self.block_size  # a window starting at high - 1 ends at the last token
        B = self.batch_size
        starts = torch.randint(high, (self.world_size * B,), generator=self.generator).numpy()  # global batch
        starts = starts[self.rank * B : (self.rank + 1) * B]  # (B,): this rank's slice
        x, y = _windows(self.tokens, starts, self.block_size)
        self.batches += 1
        return to_device(x, device), to_device(y, device)

    def state_dict(self) -> dict:
        """Plain values and one uint8 tensor: loadable with `torch.load(weights_only=True)`."""
        return {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "block_size": self.block_size,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "rank", "block_size", "batch_size"):
            if state[key] != getattr(self, key):
                raise CgptError(
                    f"sampler state: {key}={state[key]} was saved, but this sampler has "
                    f"{key}={getattr(self, key)}; resume with the same data settings"
                )
        self.generator.set_state(state["generator"].cpu())  # a checkpoint may have been mapped to a GPU
        self.batches = int(state["batches"])
