"""Supervised fine-tuning (LoRA or full), as one recipe you can read top to bottom.

    setup (device, model, adapters) → data (render, pack, plan steps)
    → resume → loop (loss at labelled tokens, step, log, checkpoint) → save

A killed run continues from its last checkpoint with the same data order: the
order of step k is a pure function of (seed, k).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from pydantic import BaseModel

from shoptalk import __version__
from shoptalk.artifacts import DatasetArtifact, RunArtifact, write_json
from shoptalk.config import ShoptalkConfig, TrainSettings
from shoptalk.models import load_tokenizer, pick_device
from shoptalk.train import checkpoint
from shoptalk.train.frozen import (
    cache_bytes,
    cache_rows,
    check_equivalence,
    only_layers,
)
from shoptalk.train.loss import labelled_loss
from shoptalk.train.methods import attach_method, load_for_method
from shoptalk.train.packing import Row, batches, collate, pack, truncate
from shoptalk.train.progress import TrainProgress
from shoptalk.train.render import encode_conversation, encode_text, ensure_chat_template

log = logging.getLogger(__name__)


class StepPlan(BaseModel):
    rows: int
    tokens: int
    labelled_tokens: int
    steps_per_epoch: int
    total_steps: int
    truncated: int


def run(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    run_dir: Path,
    stop_after: int | None = None,
) -> RunArtifact:
    """Train `base_path` on `dataset` into `run_dir`; resumes if checkpoints exist.

    `stop_after` ends the run early after that many steps (tests use it to
    simulate a crash at a known point).
    """
    settings = cfg.train
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(settings.device)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)

    # --- setup: tokenizer, model, adapters
    tokenizer = load_tokenizer(base_path)
    ensure_chat_template(tokenizer)
    model = load_for_method(base_path, settings, device)
    model, first = attach_method(model, settings)
    model.train()

    # --- data: render with the chat template, pack, plan the steps
    train_rows, plan = prepare_rows(tokenizer, dataset, cfg, "train")
    val_rows, _ = prepare_rows(tokenizer, dataset, cfg, "val", with_text=False)
    log.info("plan: %s", plan.model_dump_json())
    if first and use_frozen_cache(
        model, train_rows, first, settings, tokenizer.pad_token_id, device
    ):
        cache_rows(model, train_rows + val_rows, first, tokenizer.pad_token_id, device)
    top = (
        only_layers(model, first)
        if any(r.hidden is not None for r in train_rows)
        else nullcontext()
    )
    params = dict(model.named_parameters())
    trainable = [p for p in params.values() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    warmup = int(plan.total_steps * settings.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, plan.total_steps)
    )

    # --- resume
    ckpt_dir = run_dir / "checkpoints"
    start = 0
    last = checkpoint.latest(ckpt_dir)
    if last is not None:
        start = checkpoint.restore(last, params, optimizer, scheduler)
        log.info("resumed from %s (step %d of %d)", last.name, start, plan.total_steps)
    metrics_path = run_dir / "metrics.jsonl"
    keep_metrics_until(metrics_path, start)

    # --- loop
    end = plan.total_steps if stop_after is None else min(plan.total_steps, stop_after)
    progress = TrainProgress(plan.total_steps, start, resumed=start > 0)
    with top, progress, metrics_path.open("a", encoding="utf-8") as metrics:
        for step in range(start, end):
            t0 = time.perf_counter()
            loss, n_tokens = train_step(
                model, step_batch(train_rows, plan, settings, step), tokenizer, device
            )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - t0
            record = {
                "step": step + 1,
                "epoch": round((step + 1) / plan.steps_per_epoch, 3),
                "loss": round(loss, 5),
                "lr": scheduler.get_last_lr()[0],
                "tokens": n_tokens,
                "tokens_per_s": round(n_tokens / seconds, 1),
            }
            done = step + 1
            if done % settings.checkpoint_every == 0 or done == plan.total_steps:
                if val_rows:
                    record["val_loss"] = round(
                        evaluate(model, val_rows, tokenizer, settings, device), 5
                    )
                checkpoint.save(
                    ckpt_dir, done, params, optimizer, scheduler, settings.keep_checkpoints
                )
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            progress.update(done, record)
    if end < plan.total_steps:
        return RunArtifact(path=run_dir, run_id=run_dir.name)

    # --- save: the model (adapter or full), its tokenizer, and a card
    save_final(model, tokenizer, run_dir / "final")
    write_json(run_dir / "card.json", card(cfg, dataset, base_path, plan, metrics_path))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return RunArtifact(path=run_dir, run_id=run_dir.name)


def use_frozen_cache(
    model: torch.nn.Module,
    rows: list[Row],
    first: int,
    settings: TrainSettings,
    pad_id: int,
    device: str,
) -> bool:
    """Cache the frozen layers' output if it fits the memory allowance and is exact for this model."""
    size = cache_bytes(rows, model.config.hidden_size)
    if size > settings.cache_gb * 2**30:
        log.info(
            "frozen-layer cache skipped: %.1f GB > cache_gb=%.1f", size / 2**30, settings.cache_gb
        )
        return False
    return check_equivalence(model, rows[0], first, pad_id, device)


def prepare_rows(
    tokenizer, dataset: DatasetArtifact, cfg: ShoptalkConfig, split: str, with_text: bool = True
) -> tuple[list[Row], StepPlan]:
    settings = cfg.train
    examples = [
        encode_conversation(tokenizer, c, cfg.system_prompt) for c in dataset.conversations(split)
    ]
    if with_text:
        examples += [encode_text(tokenizer, chunk.text) for chunk in dataset.texts()]
    too_long = sum(len(e.input_ids) > settings.max_seq_len for e in examples)
    if too_long:
        log.warning(
            "%d examples longer than max_seq_len=%d were truncated", too_long, settings.max_seq_len
        )
    rows = pack([truncate(e, settings.max_seq_len) for e in examples], settings.max_seq_len)
    per_epoch = max(1, len(batches(rows, settings.tokens_per_step, settings.max_seq_len, 0)))
    plan = StepPlan(
        rows=len(rows),
        tokens=sum(len(r.input_ids) for r in rows),
        labelled_tokens=sum(sum(t != -100 for t in r.labels) for r in rows),
        steps_per_epoch=per_epoch,
        total_steps=max(1, math.ceil(per_epoch * settings.epochs)),
        truncated=too_long,
    )
    return rows, plan


def step_batch(rows: list[Row], plan: StepPlan, settings: TrainSettings, step: int) -> list[Row]:
    epoch, index = divmod(step, plan.steps_per_epoch)
    return batches(rows, settings.tokens_per_step, settings.max_seq_len, settings.seed + epoch)[
        index
    ]


def train_step(
    model: torch.nn.Module, rows: list[Row], tokenizer, device: str
) -> tuple[float, int]:
    batch = {k: v.to(device) for k, v in collate(rows, tokenizer.pad_token_id).items()}
    total, count = labelled_loss(model, batch)
    loss = total / max(count, 1)
    loss.backward()
    return float(loss.detach()), int(sum(len(r.input_ids) for r in rows))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, rows: list[Row], tokenizer, settings: TrainSettings, device: str
) -> float:
    model.eval()
    total, count = 0.0, 0
    for group in batches(rows, settings.tokens_per_step, settings.max_seq_len, 0):
        batch = {k: v.to(device) for k, v in collate(group, tokenizer.pad_token_id).items()}
        loss_sum, n = labelled_loss(model, batch)
        total, count = total + float(loss_sum), count + n
    model.train()
    return total / max(count, 1)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def keep_metrics_until(path: Path, step: int) -> None:
    """After a resume, drop metric lines written after the checkpoint we restarted from."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def save_final(model: torch.nn.Module, tokenizer, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def card(
    cfg: ShoptalkConfig, dataset: DatasetArtifact, base_path: str, plan: StepPlan, metrics: Path
) -> dict:
    import peft
    import transformers

    lines = [
        json.loads(line)
        for line in metrics.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return {
        "base_model": cfg.base_model,
        "base_path": base_path,
        "dataset_hash": dataset.hash,
        "train": cfg.train.model_dump(),
        "system_prompt": cfg.system_prompt,
        "plan": plan.model_dump(),
        "final_loss": lines[-1]["loss"] if lines else None,
        "final_val_loss": next((r["val_loss"] for r in reversed(lines) if "val_loss" in r), None),
        "versions": {
            "shoptalk": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
        },
    }
