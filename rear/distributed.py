"""torchrun integration: one process per device; gloo on CPU, NCCL on GPUs."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), readable before `setup`."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup() -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = launched_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            raise ValueError(f"local rank {local} has no GPU of its own: this node has {torch.cuda.device_count()}; "
                             f"launch torchrun with --nproc_per_node {torch.cuda.device_count()} or fewer (one process "
                             "per GPU: NCCL refuses two ranks on one device)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
