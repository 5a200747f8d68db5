"""Data-parallel calibration and QAT under `torchrun` (torch.distributed; gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from typing import TypeVar

import torch

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment (once); (0, 1) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def shard(items: list[T], rank: int, world: int) -> list[T]:
    """Every world-th item starting at rank: disjoint shards that together cover all items."""
    return items[rank::world]
