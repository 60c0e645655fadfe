"""Sharding over processes launched by ``torchrun`` (torch.distributed): rank r takes the
sequences i with ``i % world_size == r``; rank 0 merges. Without torchrun: one process, rank 0."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    initialized_here: bool = False

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.initialized_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_shard(device_type: str = "cpu") -> Shard:
    """The process group torchrun describes (gloo on CPU, nccl on CUDA), or a single shard."""
    if not launched_by_torchrun():
        return Shard()
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        created = True
    return Shard(dist.get_rank(), dist.get_world_size(), created)


def local_device(device):
    """Under torchrun on CUDA, each process takes the GPU of its LOCAL_RANK."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
