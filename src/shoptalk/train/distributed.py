"""Data-parallel training across processes and machines (torchrun / `accelerate launch`).

Both launchers set RANK, WORLD_SIZE and LOCAL_RANK; without them this is a
single process and every function here is a no-op. Each step's rows (the
global token budget) are dealt out across processes, so a step trains on the
same rows whether 1 or 8 processes run it and the loss curve does not change.

Gradients are all-reduced by hand rather than by wrapping the model in
DistributedDataParallel: the loss calls the decoder body and the output layer
directly (train/loss.py), which bypasses DDP's forward hooks, and the exact
average needs each process's labelled-token count as its weight (ranks hold
different numbers of labelled tokens), which DDP's plain mean does not give.
Models too big for one device are sharded instead (train/sharding.py, FSDP2);
the rows, weights and counts are dealt the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shoptalk.modeling.chat_format import IGNORE
from shoptalk.train.packing import Row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this machine

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, metrics, plots and the final model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> tuple[Processes, str]:
    """Join the process group if a launcher started us; returns the processes and this one's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes(), device
    procs = Processes(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )
    if device.startswith("cuda"):
        device = f"cuda:{procs.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    log.info("process %d of %d on %s", procs.rank, world, device)
    return procs, device


def share(rows: list[Row], procs: Processes) -> list[Row]:
    """This process's part of a step's rows."""
    return rows[procs.rank :: procs.world_size]


def labelled_count(rows: list[Row]) -> int:
    """Positions with a target, counted as the loss counts them (the label after each token)."""
    return sum(sum(t != IGNORE for t in r.labels[1:]) for r in rows)


def total(value: float, procs: Processes, device: str) -> float:
    """Sum of a number over all processes."""
    if not procs.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor[0])


def sync_gradients(params: list[torch.nn.Parameter], procs: Processes) -> None:
    """Add up the processes' gradients: the gradient of the step's mean loss.

    Each process backpropagated the sum of its token losses divided by the
    labelled tokens of all processes; summed, that is the gradient of the mean
    over the whole step, exactly as one process would compute it.
    """
    if not procs.distributed:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)


def barrier(procs: Processes) -> None:
    if procs.distributed:
        dist.barrier()


def teardown(procs: Processes) -> None:
    if procs.distributed and dist.is_initialized():
        dist.destroy_process_group()
