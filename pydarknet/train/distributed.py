"""Multi-process training on PyTorch's engine: `torchrun` env vars -> process group -> DDP.

gloo on CPU, nccl on CUDA. Darknet sums gradients over the whole batch, DDP averages them over
ranks, so the trainer scales its gradient by the world size; BatchNorm statistics are reduced over
all ranks (see layers.batchnorm) so N processes compute what one process would on the global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a single process: the one that prints."""
    return int(os.environ.get("RANK", "0")) == 0


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
