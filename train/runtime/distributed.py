"""Data parallelism under `torchrun`: DDP, or FSDP2 (`fully_shard`) for models that do not fit one device.

torchrun starts one process per device and tells each its RANK, LOCAL_RANK and WORLD_SIZE through environment
variables - that is torchrun's interface, read once here. Every rank draws its own slice of the global batch
(train/data/loader.py), gradients are averaged across ranks (DDP all-reduce, or FSDP reduce-scatter), and only rank 0
writes checkpoints, metrics and the progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

PARALLEL = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    parallel: str = "ddp"  # ddp | fsdp

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device_type: str, parallel: str = "ddp") -> DistInfo | None:
    """Join the process group if torchrun started us; None for a plain single-process run."""
    if not launched_by_torchrun():
        return None
    if parallel not in PARALLEL:
        raise ValueError(f"parallel={parallel!r}: expected one of {PARALLEL}")
    info = DistInfo(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)), parallel
    )
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def device_for(info: DistInfo | None, device: torch.device) -> torch.device:
    if info is not None and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def wrap(model: nn.Module, info: DistInfo | None, device: torch.device) -> nn.Module:
    """DDP, or FSDP2 sharding each transformer block and then the whole model."""
    if info is None:
        return model
    if info.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        blocks = getattr(getattr(model, "transformer", None), "h", None)
        for block in blocks or []:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def full_state_dict(model: nn.Module, info: DistInfo | None) -> dict[str, torch.Tensor]:
    """The unsharded weights on the CPU (FSDP gathers them; a collective, so every rank must call it)."""
    if info is not None and info.parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict()


def all_reduce_mean(value: torch.Tensor, info: DistInfo | None) -> torch.Tensor:
    if info is None:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def teardown(info: DistInfo | None) -> None:
    if info is not None and dist.is_initialized():
        dist.destroy_process_group()


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo | None) -> dict:
    if info is not None and info.parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def load_full_states(
    model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optim_state: dict, info: DistInfo | None
) -> None:
    """Load unsharded weights and optimizer state (as written by rank 0) into a plain or sharded model."""
    if info is not None and info.parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, weights, options=options)
        set_optimizer_state_dict(model, optimizer, optim_state, options=options)
        return
    model.load_state_dict(weights)
    optimizer.load_state_dict(optim_state)
