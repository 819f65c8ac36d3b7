"""Direct preference optimization, as one recipe aligned section by section with sft.py.

    setup (device, model, adapters) → data (render pairs, plan steps)
    → reference log-probs (once) → resume → loop (DPO loss, step, log, checkpoint) → save

The loss is DPO's (Rafailov et al. 2023; TRL's DPOTrainer is the reference for
the math): push up log p(chosen) - log p(rejected) relative to the reference
model. We write our own loop rather than compose DPOTrainer because it has to
share SFT's packing, chunked log-probs, checkpoints and resume: a pair's chosen
and rejected answers are packed into the same batch without seeing each other,
and the output layer runs only on answer tokens.

The reference model is the policy as it starts (the base, or the SFT model DPO
continues). Its log-probs never change, so they are computed once, before the
first step, by the very model about to be trained: no second copy of the
weights for full fine-tuning, and no adapter switching for LoRA, where
"adapters disabled" would be the base rather than the SFT model we start from.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel

from shoptalk import progress
from shoptalk.artifacts import DatasetArtifact, MetricsLog, RunArtifact, keep_metrics_until
from shoptalk.config import DpoSettings, ShoptalkConfig, refuse_dpo_processes, world_size
from shoptalk.modeling.chat_format import (
    IGNORE,
    Example,
    encode,
    ensure_chat_template,
    render_prompt,
    styled_system_prompt,
    with_system,
)
from shoptalk.modeling.load import load_tokenizer, pick_device
from shoptalk.records import Preference
from shoptalk.train import checkpoint
from shoptalk.train.logprobs import sequence_logprobs
from shoptalk.train.methods import attach_method, load_for_method
from shoptalk.train.packing import Row, collate
from shoptalk.train.plan import resolve_auto
from shoptalk.train.sft import OnStep, lr_factor, save_final

log = logging.getLogger(__name__)


@dataclass
class Pair:
    chosen: Example
    rejected: Example

    @property
    def tokens(self) -> int:
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)


class PairPlan(BaseModel):
    pairs: int
    tokens: int
    pairs_per_step: int
    steps_per_epoch: int
    total_steps: int
    truncated: int
    # The values trained with (none on plans written before they were recorded).
    tokens_per_step: int | None = None
    learning_rate: float | None = None
    epochs: float | None = None
    beta: float | None = None

    def render(self) -> str:
        return (
            f"plan     dpo: {self.pairs} pairs ({self.truncated} truncated), "
            f"{self.pairs_per_step} pairs/step, {self.steps_per_epoch} steps/epoch x "
            f"{self.epochs:g} epochs = {self.total_steps} steps, lr {self.learning_rate:g}, "
            f"beta {self.beta:g}"
        )


@dataclass
class Setup:
    """The DPO run set up: tokenizer, policy with its method, encoded pairs, the plan."""

    tokenizer: object
    model: torch.nn.Module
    pairs: list[Pair]
    plan: PairPlan


def run(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    run_dir: Path,
    start_from: Path | None = None,
    stop_after: int | None = None,
    on_plan: Callable[[PairPlan], None] | None = None,
    on_step: OnStep | None = None,
    lr_scale: float = 1.0,
) -> RunArtifact:
    """DPO-train `base_path` (or the SFT model in `start_from`) on the dataset's preference pairs.

    `start_from` is an SFT run's `final/`: a LoRA adapter keeps training, a full
    model replaces `base_path`. Resumes if checkpoints exist in `run_dir`. Runs in one
    process: under torchrun every process would train in `run_dir` and resume from
    the others' checkpoints, so a multi-process launch raises before anything is written.
    `on_plan`, `on_step` and `lr_scale` as in `sft.run`.
    """
    refuse_dpo_processes(world_size(os.environ))
    settings, dpo = cfg.train, cfg.train.dpo
    run = RunArtifact.at(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(settings.device)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)

    # --- setup and data: model with its method, each pair's two answers rendered, steps planned
    setup = prepare(cfg, dataset, base_path, device, start_from, lr_scale)
    tokenizer, model, pairs, plan = setup.tokenizer, setup.model, setup.pairs, setup.plan
    log.info("dpo plan: %s", plan.model_dump_json())
    run.write_plan(plan.model_dump())
    if on_plan is not None:
        on_plan(plan)
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [p for p in params.values() if p.requires_grad],
        lr=plan.learning_rate,
        weight_decay=settings.weight_decay,
    )
    trainable = checkpoint.Trainable(params, optimizer)
    warmup = int(plan.total_steps * settings.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, plan.total_steps)
    )

    # --- reference: the starting policy's log-probs, before any weight changes (also on resume)
    reference, counts = reference_logprobs(model, pairs, plan, tokenizer.pad_token_id, device)

    # --- resume
    ckpt_dir = run.checkpoints
    start = 0
    last = checkpoint.latest(ckpt_dir)
    if last is not None:
        start = checkpoint.restore(last, trainable, scheduler)
        log.info("resumed from %s (step %d of %d)", last.name, start, plan.total_steps)
    keep_metrics_until(run.metrics_file, start)

    # --- loop
    model.train()
    end = plan.total_steps if stop_after is None else min(plan.total_steps, stop_after)
    with MetricsLog(run.metrics_file) as metrics:
        for step in range(start, end):
            t0 = time.perf_counter()
            pair_ids = step_pairs(plan, settings.seed, step)
            batch = pair_batch([pairs[i] for i in pair_ids], tokenizer.pad_token_id, device)
            policy, _ = sequence_logprobs(model, batch, 2 * len(pair_ids))
            loss, stats = dpo_loss(policy.view(-1, 2), reference[pair_ids], counts[pair_ids], dpo)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            n_tokens = sum(pairs[i].tokens for i in pair_ids)
            record = {
                "step": step + 1,
                "epoch": round((step + 1) / plan.steps_per_epoch, 3),
                "loss": round(float(loss.detach()), 5),
                **{k: round(v, 5) for k, v in stats.items()},
                "lr": scheduler.get_last_lr()[0],
                "tokens": n_tokens,
                "tokens_per_s": round(n_tokens / (time.perf_counter() - t0), 1),
            }
            done = step + 1
            # The record first: a kill before the checkpoint leaves a record the resume drops.
            metrics.write(record)
            if done % settings.checkpoint_every == 0 or done == plan.total_steps:
                checkpoint.save(ckpt_dir, done, trainable, scheduler, settings.keep_checkpoints)
            if on_step is not None:
                on_step(done, plan.total_steps, record)
    if end < plan.total_steps:
        return run

    # --- save: the model (adapter or full), its tokenizer, and a card
    save_final(model, tokenizer, run.final)
    run.write_card(card(cfg, dataset, base_path, start_from, plan, run.metrics()))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return run


def prepare(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    device: str,
    start_from: Path | None = None,
    lr_scale: float = 1.0,
) -> Setup:
    """Load the policy with its method, encode the pairs and plan the steps (no training)."""
    settings, dpo = cfg.train, cfg.train.dpo
    tokenizer = load_tokenizer(base_path)
    ensure_chat_template(tokenizer)
    model = load_policy(base_path, start_from, cfg, device)
    model, _ = attach_method(model, settings)
    system = styled_system_prompt(cfg.system_prompt, dataset.style())
    pairs, truncated = encode_pairs(tokenizer, dataset.preferences(), cfg, system)
    size = sum(p.numel() for p in model.parameters())
    lora = hasattr(model, "peft_config")
    values = resolve_auto(settings, size, lora, sum(p.tokens for p in pairs))
    plan = plan_steps(pairs, values.tokens_per_step, dpo.epochs, truncated)
    plan = plan.model_copy(
        update={
            "tokens_per_step": values.tokens_per_step,
            "learning_rate": dpo.learning_rate * lr_scale,
            "epochs": dpo.epochs,
            "beta": dpo.beta,
        }
    )
    return Setup(tokenizer, model, pairs, plan)


def plan_run(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    start_from: Path | None = None,
    lr_scale: float = 1.0,
) -> PairPlan:
    """The plan `run` would follow, without training."""
    device = pick_device(cfg.train.device)
    return prepare(cfg, dataset, base_path, device, start_from, lr_scale).plan


def load_policy(
    base_path: str, start_from: Path | None, cfg: ShoptalkConfig, device: str
) -> torch.nn.Module:
    """The model DPO starts from: the base, an SFT model, or the base with the SFT adapter."""
    if start_from is None:
        return load_for_method(base_path, cfg.train, device)
    if not (start_from / "adapter_config.json").is_file():
        return load_for_method(str(start_from), cfg.train, device)
    from peft import PeftModel

    base = load_for_method(base_path, cfg.train, device)
    return PeftModel.from_pretrained(base, start_from, is_trainable=True)


# --- data ---------------------------------------------------------------------------


def encode_answer(tokenizer, record: Preference, answer: str, system_prompt: str) -> Example:
    """The prompt as context and `answer` as the only target, rendered by the chat template."""
    messages = with_system(record.prompt, system_prompt)
    before = render_prompt(tokenizer, messages)
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": answer}], tokenize=False
    )
    if not full.startswith(before):
        raise ValueError(
            f"{record.source}: the chat template does not render the answer after the prompt; "
            "cannot mask the loss to the answer"
        )
    context, target = encode(tokenizer, before), encode(tokenizer, full[len(before) :])
    return Example(context + target, [IGNORE] * len(context) + target)


def fit(example: Example, max_len: int) -> tuple[Example, bool]:
    """At most `max_len` tokens: the prompt loses its start, a long answer its end.

    The prompt keeps at least half the room when the answer is long, so a pair
    is never left without context or without answer tokens to compare.
    """
    if len(example.input_ids) <= max_len:
        return example, False
    n_context = next(i for i, t in enumerate(example.labels) if t != IGNORE)
    n_target = len(example.input_ids) - n_context
    keep_context = min(n_context, max_len - min(n_target, max_len // 2))
    cut = n_context - keep_context
    ids = example.input_ids[cut:][:max_len]
    labels = example.labels[cut:][:max_len]
    return Example(ids, labels), True


def encode_pairs(
    tokenizer, records: list[Preference], cfg: ShoptalkConfig, system_prompt: str
) -> tuple[list[Pair], int]:
    pairs, truncated = [], 0
    for record in records:
        chosen, rejected = (
            fit(encode_answer(tokenizer, record, answer, system_prompt), cfg.train.max_seq_len)
            for answer in (record.chosen, record.rejected)
        )
        pairs.append(Pair(chosen[0], rejected[0]))
        truncated += chosen[1] or rejected[1]
    if truncated:
        log.warning("%d preference pairs longer than max_seq_len were truncated", truncated)
    return pairs, truncated


def plan_steps(pairs: list[Pair], tokens_per_step: int, epochs: float, truncated: int) -> PairPlan:
    """A fixed number of pairs per step, about `tokens_per_step` tokens on average."""
    if not pairs:
        raise ValueError("no preference pairs to train on (sources.preferences is empty)")
    tokens = sum(p.tokens for p in pairs)
    per_step = max(1, min(len(pairs), round(tokens_per_step * len(pairs) / tokens)))
    per_epoch = math.ceil(len(pairs) / per_step)
    return PairPlan(
        pairs=len(pairs),
        tokens=tokens,
        pairs_per_step=per_step,
        steps_per_epoch=per_epoch,
        total_steps=max(1, math.ceil(per_epoch * epochs)),
        truncated=truncated,
    )


def step_pairs(plan: PairPlan, seed: int, step: int) -> list[int]:
    """Which pairs step `step` trains on: a pure function of (seed, step), so resume is exact."""
    epoch, index = divmod(step, plan.steps_per_epoch)
    order = list(range(plan.pairs))
    random.Random(seed + epoch).shuffle(order)
    return order[index * plan.pairs_per_step : (index + 1) * plan.pairs_per_step]


def pair_batch(pairs: list[Pair], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    """Pairs packed into rows, chosen then rejected, each sequence with its own positions.

    Sequence 2k is pair k's chosen answer and 2k+1 its rejected one, so the
    log-probs come back as a (pairs, 2) table. Rows are filled first-fit,
    longest pairs first; a row holds whole pairs only.
    """
    width = max(p.tokens for p in pairs)
    rows: list[Row] = []
    owners: list[list[int]] = []
    for k in sorted(range(len(pairs)), key=lambda k: -pairs[k].tokens):
        fits = next(
            (i for i, r in enumerate(rows) if len(r.input_ids) + pairs[k].tokens <= width), None
        )
        if fits is None:
            rows.append(Row([], [], []))
            owners.append([])
            fits = len(rows) - 1
        for seq, example in ((2 * k, pairs[k].chosen), (2 * k + 1, pairs[k].rejected)):
            rows[fits].input_ids += example.input_ids
            rows[fits].labels += example.labels
            rows[fits].position_ids += list(range(len(example.input_ids)))
            owners[fits] += [seq] * len(example.input_ids)
    batch = collate(rows, pad_id)
    wide = batch["input_ids"].shape[1]
    batch["sequence_ids"] = torch.tensor([o + [-1] * (wide - len(o)) for o in owners])
    return {k: v.to(device) for k, v in batch.items()}


# --- reference and loss -------------------------------------------------------------


@torch.no_grad()
def reference_logprobs(
    model: torch.nn.Module, pairs: list[Pair], plan: PairPlan, pad_id: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs, answer token counts) of every pair's (chosen, rejected), shape (pairs, 2)."""
    model.eval()
    logps = torch.zeros(len(pairs), 2)
    counts = torch.zeros(len(pairs), 2, dtype=torch.long)
    step = plan.pairs_per_step
    batches = [list(range(i, min(len(pairs), i + step))) for i in range(0, len(pairs), step)]
    for ids in progress.track(batches, "dpo: reference log-probs", len(pairs), size=len):
        batch = pair_batch([pairs[i] for i in ids], pad_id, device)
        sums, n = sequence_logprobs(model, batch, 2 * len(ids))
        logps[ids] = sums.view(-1, 2).cpu()
        counts[ids] = n.view(-1, 2).cpu()
    model.train()
    return logps, counts


def dpo_loss(
    policy: torch.Tensor, reference: torch.Tensor, counts: torch.Tensor, settings: DpoSettings
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean DPO (or IPO) loss over pairs; columns are (chosen, rejected) summed log-probs.

    sigmoid: -log σ(β · [(π_c - ref_c) - (π_r - ref_r)])
    ipo:     ([(π_c - ref_c)/n_c - (π_r - ref_r)/n_r] - 1/(2β))², per-token averages as TRL
    """
    reference, counts = reference.to(policy.device), counts.to(policy.device)
    ratios = policy - reference
    if settings.loss == "ipo":
        per_token = ratios / counts.clamp(min=1)
        losses = (per_token[:, 0] - per_token[:, 1] - 1 / (2 * settings.beta)) ** 2
    else:
        losses = -F.logsigmoid(settings.beta * (ratios[:, 0] - ratios[:, 1]))
    rewards = settings.beta * ratios.detach()
    margin = rewards[:, 0] - rewards[:, 1]
    stats = {
        "reward_margin": float(margin.mean()),
        "accuracy": float((margin > 0).float().mean()),
        "chosen_reward": float(rewards[:, 0].mean()),
        "rejected_reward": float(rewards[:, 1].mean()),
    }
    return losses.mean(), stats


def card(
    cfg: ShoptalkConfig,
    dataset: DatasetArtifact,
    base_path: str,
    start_from: Path | None,
    plan: PairPlan,
    lines: list[dict],
) -> dict:
    import peft
    import transformers

    from shoptalk import __version__

    last = lines[-1] if lines else {}
    return {
        "recipe": "dpo",
        "base_model": cfg.base_model,
        "base_path": base_path,
        "start_from": str(start_from) if start_from else None,
        "dataset_hash": dataset.hash,
        "groups": cfg.train.groups,  # as the SFT card: who may be served the model
        "train": cfg.train.model_dump(),
        "system_prompt": styled_system_prompt(cfg.system_prompt, dataset.style()),
        "plan": plan.model_dump(),
        "final_loss": last.get("loss"),
        "final_reward_margin": last.get("reward_margin"),
        "final_accuracy": last.get("accuracy"),
        "versions": {
            "shoptalk": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
    }


def has_pairs(dataset: DatasetArtifact) -> bool:
    path = dataset.preferences_file
    return path.is_file() and bool(path.read_text(encoding="utf-8").strip())
