"""Checkpoints that survive `kill -9` at any moment.

A checkpoint is a folder written under a temporary name and renamed into place,
so a half-written one is never mistaken for a good one. It holds everything a
resumed run needs to continue exactly: trainable weights, optimizer, scheduler,
RNG states and the step (the data order is a function of seed and step).
Parameters are passed by name as named when training started, since the
frozen-layer cache swaps the decoder's layer list during the loop.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

PREFIX = "step-"


def trainable_state(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in params.items() if p.requires_grad}


def save(
    folder: Path,
    step: int,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    keep: int,
) -> Path:
    target = folder / f"{PREFIX}{step:07d}"
    tmp = folder / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {
        "step": step,
        "trainable": trainable_state(params),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "state.pt")
    tmp.rename(target)
    prune(folder, keep)
    return target


def latest(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob(f"{PREFIX}*") if (p / "state.pt").is_file())
    return found[-1] if found else None


def restore(
    path: Path,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
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
