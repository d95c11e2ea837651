"""Process-group setup for `torchrun`, and the few collectives training needs.

The same command runs as one plain process or as N processes under `torchrun`: when torchrun's
environment (`WORLD_SIZE` > 1) is present, the process joins a group (NCCL on CUDA, gloo on
CPU) and binds to GPU `LOCAL_RANK`; otherwise every collective here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from model.runtime import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank among `world_size` processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistEnv:
    """Join torchrun's process group if there is one; returns this process's place."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank=local_rank)
    if world_size > 1 and not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str = "auto") -> Iterator[DistEnv]:
    """`setup()` ... `teardown()`, also on errors."""
    env = setup(device)
    try:
        yield env
    finally:
        teardown()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def gather_objects(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not env.distributed:
        return [obj]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_tensor(env: DistEnv, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (a new tensor; the input is untouched)."""
    total = values.detach().clone()
    if env.distributed:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def sync_buffers(env: DistEnv, module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step of an epoch each
    rank holds statistics updated by its own batch; syncing makes validation and checkpoints
    identical everywhere.
    """
    if not env.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
