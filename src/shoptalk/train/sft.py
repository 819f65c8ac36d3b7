"""Supervised fine-tuning (LoRA or full), as one recipe you can read top to bottom.

    setup (processes, device, model, adapters) → data (render, pack)
    → plan ("auto" settings, time and memory estimate) → resume
    → loop (loss at labelled tokens, step, log, evaluate, checkpoint, stop early?) → save

A killed run continues from its last checkpoint with the same data order: the
order of step k is a pure function of (seed, k). Under torchrun or `accelerate
launch` each process trains on its share of every step's rows and only the
main process writes (train/distributed.py); with `train.sharding` (or an FSDP
accelerate config) the model is also sharded across them (train/sharding.py).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from shoptalk import __version__
from shoptalk.artifacts import DatasetArtifact, MetricsLog, RunArtifact, keep_metrics_until
from shoptalk.config import ShoptalkConfig, TrainSettings
from shoptalk.modeling.chat_format import (
    IGNORE,
    encode_conversation,
    encode_text,
    ensure_chat_template,
    styled_system_prompt,
)
from shoptalk.modeling.load import load_tokenizer, pick_device
from shoptalk.train import checkpoint, distributed, monitor, sharding
from shoptalk.train.distributed import Processes
from shoptalk.train.frozen import (
    cache_bytes,
    cache_rows,
    check_equivalence,
    only_layers,
)
from shoptalk.train.loss import LabelledLoss, model_batch
from shoptalk.train.methods import attach_method, load_for_method
from shoptalk.train.packing import Row, batches, pack, truncate
from shoptalk.train.plan import DataShape, TrainPlan, detect_hardware, make_plan, model_shape
from shoptalk.train.plot import LossPlot
from shoptalk.train.speed import fast_forward
from shoptalk.train.trackers import open_trackers

log = logging.getLogger(__name__)

# Told each step's metrics record as it is logged: (step, total steps, record).
OnStep = Callable[[int, int, dict], None]


@dataclass
class Job:
    """Everything the loop needs, set up and planned."""

    tokenizer: object
    model: torch.nn.Module
    first: int  # first trainable layer
    train_rows: list[Row]
    val_rows: list[Row]
    use_cache: bool
    plan: TrainPlan
    settings: TrainSettings  # with every "auto" resolved


def run(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    run_dir: Path,
    stop_after: int | None = None,
    on_plan: Callable[[TrainPlan], None] | None = None,
    on_step: OnStep | None = None,
    lr_scale: float = 1.0,
) -> RunArtifact:
    """Train `base_path` on `dataset` into `run_dir`; resumes if checkpoints exist.

    `stop_after` ends the run early after that many steps (tests use it to
    simulate a crash at a known point). `on_plan` receives the plan before
    training, `on_step` every step's metrics record (main process only).
    `lr_scale` multiplies the planned learning rate (a job's multiplier).
    """
    procs, device = distributed.setup(pick_device(cfg.train.device))
    mode = sharding.choose(cfg.train, procs, os.environ)
    run = RunArtifact.at(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    random.seed(cfg.train.seed)

    # --- setup and data: model with its method, rows packed, "auto" settings planned, sharded?
    job = prepare(cfg, dataset, base_path, device, procs, mode, lr_scale)
    model, settings, plan = job.model, job.settings, job.plan
    train_rows, val_rows, pad_id = job.train_rows, job.val_rows, job.tokenizer.pad_token_id
    loss_fn = LabelledLoss(model) if mode == "none" else sharding.shard(model, mode, procs, device)
    if procs.is_main:
        log.info("plan: %s", plan.model_dump_json())
        # Read by the console and the jobs API for their time-left estimates.
        run.write_plan(plan.model_dump())
        if on_plan is not None:
            on_plan(plan)
    if job.use_cache:
        cache_rows(model, train_rows + val_rows, job.first, pad_id, device)
    top = only_layers(model, job.first) if job.use_cache else nullcontext()
    if settings.gradient_checkpointing:
        # The forward pass runs inside loss.py's fast_forward; the backward pass's
        # recomputation must run the same modules, or it saves different tensors.
        recompute = {
            "use_reentrant": False,
            "context_fn": lambda: (nullcontext(), fast_forward(model)),
        }
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=recompute)
    params = dict(model.named_parameters())
    train_params = [p for p in params.values() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        train_params, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    trainable = (
        sharding.ShardedTrainable(model, optimizer)
        if mode != "none"
        else checkpoint.Trainable(params, optimizer)
    )
    warmup = int(plan.total_steps * settings.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, plan.total_steps)
    )

    # --- resume: weights, optimizer, scheduler, RNG; early stopping from the logged val losses
    ckpt_dir = run.checkpoints
    start = 0
    last = checkpoint.latest(ckpt_dir)
    if last is not None:
        start = checkpoint.restore(last, trainable, scheduler)
        log.info("resumed from %s (step %d of %d)", last.name, start, plan.total_steps)
    metrics_path = run.metrics_file
    if procs.is_main:
        keep_metrics_until(metrics_path, start)
    distributed.barrier(procs)
    stopper = monitor.EarlyStopping(
        settings.early_stopping_patience, settings.early_stopping_min_delta
    )
    stopper.replay(metrics_path)

    # --- loop
    end = plan.total_steps if stop_after is None else min(plan.total_steps, stop_after)
    # A run killed right after its stopping evaluation has nothing left to train.
    stopped_at = start if stopper.should_stop else None
    eval_every = settings.eval_every or settings.checkpoint_every
    loss_plot = LossPlot(metrics_path, run_dir / "loss.png")
    with ExitStack() as stack:
        stack.enter_context(top)
        if procs.is_main:
            metrics = stack.enter_context(MetricsLog(metrics_path))
            trackers = open_trackers(settings.trackers, run_dir, settings.model_dump(mode="json"))
            stack.callback(lambda: [t.close() for t in trackers])
        for step in range(start, end if stopped_at is None else start):
            t0 = time.perf_counter()
            rows = step_batch(train_rows, plan, settings, step)
            loss, n_tokens = shared_step(loss_fn, rows, job.tokenizer, device, train_params, procs)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - t0
            done = step + 1
            record = {
                "step": done,
                "epoch": round(done / plan.steps_per_epoch, 3),
                "loss": round(loss, 5),
                "lr": scheduler.get_last_lr()[0],
                "tokens": n_tokens,
                "tokens_per_s": round(n_tokens / seconds, 1),
                **monitor.memory_record(device),
            }
            evaluated = bool(val_rows) and (done % eval_every == 0 or done == plan.total_steps)
            if evaluated:
                val_loss = evaluate(loss_fn, val_rows, job.tokenizer, settings, device, procs)
                record["val_loss"] = round(val_loss, 5)
                if stopper.update(done, record["val_loss"]) and stopper.enabled:
                    monitor.save_best(run_dir, done, trainable, write=procs.is_main)
                if stopper.should_stop:
                    stopped_at = done
                    log.info(
                        "early stopping at step %d: no better validation loss than %.5f "
                        "(step %d) in %d evaluations",
                        done,
                        stopper.best_loss,
                        stopper.best_step,
                        stopper.patience,
                    )
            # The record before the checkpoint: a kill between the two leaves a record the
            # resume drops (keep_metrics_until), never a checkpoint whose step has no record.
            if procs.is_main:
                metrics.write(record)
                for tracker in trackers:
                    tracker.log(record)
                if evaluated:
                    loss_plot.update()
            if done % settings.checkpoint_every == 0 or done == plan.total_steps or stopped_at:
                checkpoint.save(
                    ckpt_dir, done, trainable, scheduler, settings.keep_checkpoints, procs.is_main
                )
            if procs.is_main and on_step is not None:
                on_step(done, plan.total_steps, record)
            if stopped_at:
                break
    if stopped_at is None and end < plan.total_steps:
        distributed.teardown(procs)
        return run

    # --- save: the model (adapter or full; the best evaluation's when stopping early), a card
    best_step = monitor.restore_best(run_dir, trainable) if stopper.enabled else None
    # Sharded weights are gathered by all processes, to the main one.
    full_weights = trainable.model_state() if trainable.sharded else None
    if procs.is_main:
        save_final(model, job.tokenizer, run.final, full_weights)
        summary = stopper.summary(stopped_at) | {"final_weights_step": best_step}
        run.write_card(card(cfg, settings, dataset, base_path, plan, run.metrics(), summary))
        if metrics_path.is_file():
            loss_plot.update(force=True)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        (run_dir / monitor.BEST).unlink(missing_ok=True)
    distributed.barrier(procs)
    distributed.teardown(procs)
    return run


def plan_run(
    cfg: ShoptalkConfig, dataset: DatasetArtifact, base_path: str, lr_scale: float = 1.0
) -> TrainPlan:
    """The plan `run` would follow, without training (`shoptalk train --plan`)."""
    return prepare(cfg, dataset, base_path, pick_device(cfg.train.device), lr_scale=lr_scale).plan


def prepare(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    device: str,
    procs: Processes | None = None,
    mode: sharding.Sharding = "none",
    lr_scale: float = 1.0,
) -> Job:
    """Load the model with its method, pack the data and plan the run (no training).

    A model to shard is loaded on the CPU: sharding moves each process's slice to `device`.
    """
    procs = procs or Processes()
    settings = cfg.train.model_copy(update={"sharding": mode})
    tokenizer = load_tokenizer(base_path)
    ensure_chat_template(tokenizer)
    model = load_for_method(base_path, settings, "cpu" if mode != "none" else device)
    model, first = attach_method(model, settings)
    model.train()
    train_rows = prepare_rows(tokenizer, dataset, cfg, "train")
    val_rows = prepare_rows(tokenizer, dataset, cfg, "val", with_text=False)
    # Sharded, the frozen bottom layers run every step (their weights are spread out).
    use_cache = (
        bool(first)
        and mode == "none"
        and use_frozen_cache(model, train_rows, first, settings, tokenizer.pad_token_id, device)
    )
    data = DataShape(
        rows=len(train_rows),
        tokens=sum(len(r.input_ids) for r in train_rows),
        labelled_tokens=sum(sum(t != IGNORE for t in r.labels) for r in train_rows),
        cache_bytes=cache_bytes(train_rows + val_rows, model.config.hidden_size)
        if use_cache
        else 0,
    )
    hardware = detect_hardware(device)
    if not device.startswith("cuda"):
        # Processes on one machine share its memory.
        hardware.memory_bytes //= procs.local_world_size
    plan = make_plan(
        model_shape(model, first), data, settings, hardware, procs.world_size, mode, lr_scale
    )
    return Job(
        tokenizer, model, first, train_rows, val_rows, use_cache, plan, plan.resolve(settings)
    )


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
) -> list[Row]:
    settings = cfg.train
    system = styled_system_prompt(cfg.system_prompt, dataset.style())
    examples = [encode_conversation(tokenizer, c, system) for c in dataset.conversations(split)]
    if with_text:
        examples += [encode_text(tokenizer, chunk.text) for chunk in dataset.texts()]
    too_long = sum(len(e.input_ids) > settings.max_seq_len for e in examples)
    if too_long:
        log.warning(
            "%d examples longer than max_seq_len=%d were truncated", too_long, settings.max_seq_len
        )
    return pack([truncate(e, settings.max_seq_len) for e in examples], settings.max_seq_len)


def step_batch(rows: list[Row], plan: TrainPlan, settings: TrainSettings, step: int) -> list[Row]:
    """All processes' rows of step `step` (a pure function of seed and step)."""
    epoch, index = divmod(step, plan.steps_per_epoch)
    return batches(rows, settings.tokens_per_step, settings.max_seq_len, settings.seed + epoch)[
        index
    ]


def shared_step(
    loss_fn: LabelledLoss,
    rows: list[Row],
    tokenizer,
    device: str,
    params: list[torch.nn.Parameter],
    procs: Processes,
) -> tuple[float, int]:
    """This process's share of a step, gradients made global; the step's loss and tokens."""
    mine = distributed.share(rows, procs)
    count = distributed.labelled_count(mine)
    all_count = max(1.0, distributed.total(count, procs, device))
    sharded = sharding.is_sharded(loss_fn)
    if mine:
        loss, n_tokens = train_step(loss_fn, mine, tokenizer, device, all_count)
    else:
        loss, n_tokens = 0.0, 0
        if sharded:
            # FSDP gathers each layer's weights collectively, so every process runs forward
            # and backward: this one on a borrowed row whose gradient counts for nothing.
            train_step(loss_fn, rows[:1], tokenizer, device, math.inf)
    if not sharded:
        distributed.sync_gradients(params, procs)
    if not procs.distributed:
        return loss, n_tokens
    step_loss = distributed.total(loss * count, procs, device) / all_count
    return step_loss, int(distributed.total(n_tokens, procs, device))


def train_step(
    loss_fn: LabelledLoss, rows: list[Row], tokenizer, device: str, divisor: float
) -> tuple[float, int]:
    """Backpropagate the rows' summed token losses / `divisor` (all processes' labelled tokens).

    Returns the rows' mean loss and their tokens.
    """
    batch = model_batch(loss_fn.model, rows, tokenizer.pad_token_id)
    total, count = loss_fn({k: v.to(device) for k, v in batch.items()})
    (total / divisor).backward()
    return float(total.detach() / max(count, 1)), int(sum(len(r.input_ids) for r in rows))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    rows: list[Row],
    tokenizer,
    settings: TrainSettings,
    device: str,
    procs: Processes | None = None,
) -> float:
    """Mean loss per labelled token of `model` (or its LabelledLoss); processes split the batches."""
    procs = procs or Processes()
    loss_fn = model if isinstance(model, LabelledLoss) else LabelledLoss(model)
    loss_fn.eval()
    total, count = 0.0, 0
    groups = batches(rows, settings.tokens_per_step, settings.max_seq_len, 0)
    mine = groups[procs.rank :: procs.world_size]
    # Sharded, every process runs as many forwards (weights are gathered collectively);
    # the extra ones repeat a batch and count for nothing.
    extra = 0
    if sharding.is_sharded(loss_fn):
        extra = math.ceil(len(groups) / procs.world_size) - len(mine)
    for i, group in enumerate(mine + groups[:extra]):
        batch = model_batch(loss_fn.model, group, tokenizer.pad_token_id)
        loss_sum, n = loss_fn({k: v.to(device) for k, v in batch.items()})
        if i < len(mine):
            total, count = total + float(loss_sum), count + n
    loss_fn.train()
    total, count = distributed.total(total, procs, device), distributed.total(count, procs, device)
    return total / max(count, 1)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def save_final(
    model: torch.nn.Module,
    tokenizer,
    target: Path,
    full_weights: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save the model (its weights, or `full_weights` gathered from a sharded one) and tokenizer.

    Full weights are saved in 16 bits (an adapter as it trained): see `as_float16`.
    """
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    is_adapter = hasattr(model, "peft_config")
    state = full_weights if is_adapter else as_float16(full_weights or model.state_dict())
    model.save_pretrained(tmp, state_dict=state)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def as_float16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 weights rounded to float16, the type of an f16 GGUF or Ollama export.

    The scorecard then tests exactly the numbers an f16 export holds, so an
    f16 GGUF answers as the tested model did (160/160 on the example, where
    rounding at export had flipped near-tied greedy tokens in 4 of 160). A
    tensor outside float16's range stays fp32; bf16 (GPU training) is already
    16 bits. Tied tensors stay one tensor.
    """
    rounded: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def cast(t: torch.Tensor) -> torch.Tensor:
        if t.dtype != torch.float32 or not t.numel():
            return t
        if t.abs().max() > torch.finfo(torch.float16).max:
            return t
        key = (t.data_ptr(), tuple(t.shape))
        if key not in rounded:
            rounded[key] = t.detach().to(torch.float16)
        return rounded[key]

    return {name: cast(t) for name, t in state.items()}


def card(
    cfg: ShoptalkConfig,
    settings: TrainSettings,
    dataset: DatasetArtifact,
    base_path: str,
    plan: TrainPlan,
    lines: list[dict],
    early_stopping: dict,
) -> dict:
    import peft
    import transformers

    val_losses = [r["val_loss"] for r in lines if "val_loss" in r]
    final_val = val_losses[-1] if val_losses else None
    if early_stopping["final_weights_step"] is not None:
        final_val = early_stopping["best_val_loss"]
    return {
        "base_model": cfg.base_model,
        "base_path": base_path,
        "dataset_hash": dataset.hash,
        # Whose documents the model learnt: the catalog serves it only to keys holding them.
        "groups": settings.groups,
        "train": settings.model_dump(),
        "system_prompt": styled_system_prompt(cfg.system_prompt, dataset.style()),
        "plan": plan.model_dump(),
        "final_loss": lines[-1]["loss"] if lines else None,
        "final_val_loss": final_val,
        "early_stopping": early_stopping,
        "versions": {
            "shoptalk": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "python": platform.python_version(),
        },
    }
