"""Checkpoints that survive `kill -9` at any moment.

A checkpoint is a folder written under a temporary name and renamed into place,
so a half-written one is never mistaken for a good one. It holds everything a
resumed run needs to continue exactly: trainable weights, optimizer, scheduler,
RNG states and the step (the data order is a function of seed and step).
Parameters are passed by name as named when training started, since the
frozen-layer cache swaps the decoder's layer list during the loop.

Weights and optimizer state come from a `Trainable` (all of them in this
process) or a `sharding.ShardedTrainable` (gathered from every process): both
are full tensors on disk, so any number of processes can resume a checkpoint.
The trainable weights are a file of their own (a plain name -> tensor dict), so
what keeps a checkpoint as a model (the jobs worker) copies that file and never
unpickles the optimizer's or RNG's state.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from shoptalk.artifacts import CHECKPOINT_PREFIX, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS
from shoptalk.errors import ShoptalkError

PREFIX = CHECKPOINT_PREFIX


def trainable_state(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in params.items() if p.requires_grad}


class Trainable:
    """The weights that train and their optimizer, all held by this process."""

    sharded = False

    def __init__(
        self, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer
    ) -> None:
        self.params = params
        self.optimizer = optimizer

    def weights(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.params)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in weights.items():
                self.params[name].copy_(value)

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def save(
    folder: Path,
    step: int,
    trainable: Trainable,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    keep: int,
    write: bool = True,
) -> Path:
    """Write the checkpoint of `step` (only where `write`; gathering sharded weights needs every process)."""
    target = folder / f"{PREFIX}{step:07d}"
    if not (write or trainable.sharded):
        return target
    weights = trainable.weights()
    state = {
        "step": step,
        "sharded": trainable.sharded,
        "optimizer": trainable.optimizer_state(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    if not write:
        return target
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    tmp = folder / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(weights, tmp / CHECKPOINT_WEIGHTS)
    torch.save(state, tmp / CHECKPOINT_STATE)
    tmp.rename(target)
    prune(folder, keep)
    return target


def latest(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob(f"{PREFIX}*") if (p / CHECKPOINT_STATE).is_file())
    return found[-1] if found else None


def restore(
    path: Path, trainable: Trainable, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> int:
    state = torch.load(path / CHECKPOINT_STATE, map_location="cpu", weights_only=False)
    # Optimizer state is keyed by parameter index unsharded, by parameter name sharded.
    if state.get("sharded", False) != trainable.sharded:
        kind = {True: "a sharded (FSDP)", False: "an unsharded"}
        raise ShoptalkError(
            f"{path}: written by {kind[not trainable.sharded]} run, and this run is "
            f"{kind[trainable.sharded]} one; "
            "resume with the same train.sharding (or accelerate config) it started with, or "
            "delete the run's checkpoints folder to start over"
        )
    # Checkpoints written before the weights had a file of their own hold them in the state.
    weights = state.get("trainable")
    if weights is None:
        weights = torch.load(path / CHECKPOINT_WEIGHTS, map_location="cpu", weights_only=True)
    trainable.load_weights(weights)
    trainable.load_optimizer_state(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def prune(folder: Path, keep: int) -> None:
    found = sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir())
    for old in found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
