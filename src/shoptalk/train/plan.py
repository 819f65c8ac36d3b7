"""The training plan: automatic settings and an estimate of time and memory, shown before training.

`tokens_per_step`, `learning_rate` and `epochs` may be "auto". They are chosen
from the model size, the dataset size and the hardware by the small tables
below, which reproduce what was measured on the bundled example (SmolLM2-135M,
~75-115k tokens per epoch, a 2-core CPU: 4,096-token steps, lr 3e-4, 2 epochs;
bench/RESULTS.md) and scale away from it with common practice: bigger models
take smaller learning rates and bigger steps, bigger datasets fewer epochs.

The estimates are arithmetic, not a trial run, so `shoptalk train --plan` is
fast: time = FLOPs per token x tokens / (the device's measured matmul rate x an
efficiency), memory = weights + gradients + AdamW state + activations + logits
+ the frozen-layer cache + the runtime itself. Gradient checkpointing is turned
on only when that estimate exceeds the memory available.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from pydantic import BaseModel

from shoptalk.config import TrainSettings
from shoptalk.progress import format_seconds
from shoptalk.train.loss import CHUNK_TOKENS, decoder_and_head

log = logging.getLogger(__name__)

REFERENCE_PARAMS = 150e6  # the default model's size class: its measured settings hold up to here
# Python, torch and transformers themselves, before any tensor of ours (measured: ~0.5 GB RSS).
RUNTIME_BYTES = 0.5 * 2**30
# Share of the matmul rate a training step reaches (measured ~0.6-0.7 on the example; kept low
# so the estimate errs long).
EFFICIENCY = 0.5
MIN_STEPS_PER_EPOCH = 16


class Hardware(BaseModel):
    device: str
    memory_bytes: int
    flops_per_s: float


class ModelShape(BaseModel):
    """What the estimates need to know about the model, after the method is attached."""

    total_params: int
    weight_bytes: int  # as loaded: 4 bytes a weight in fp32, 2 in bf16, ~0.5 in 4 bits
    trainable_params: int
    layer_params: int  # one decoder layer
    n_layers: int
    first_trainable: int
    head_params: int
    head_trainable: bool
    hidden: int
    intermediate: int
    lora: bool


class DataShape(BaseModel):
    rows: int
    tokens: int
    labelled_tokens: int
    cache_bytes: int  # frozen-layer cache, 0 when it is not used


class MemoryEstimate(BaseModel):
    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    cache: int
    runtime: int

    @property
    def total(self) -> int:
        return sum(self.model_dump().values())


class TrainPlan(BaseModel):
    method: str
    device: str
    processes: int
    sharding: str = "none"
    total_params: int
    trainable_params: int
    tokens_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    tokens_per_step: int
    learning_rate: float
    epochs: float
    auto: list[str]
    gradient_checkpointing: bool
    checkpointing_auto: bool
    flops_per_token: float
    estimated_seconds: float
    memory: MemoryEstimate
    memory_available: int

    def resolve(self, settings: TrainSettings) -> TrainSettings:
        """The settings with every "auto" replaced by the planned value."""
        return settings.model_copy(
            update={
                "tokens_per_step": self.tokens_per_step,
                "learning_rate": self.learning_rate,
                "epochs": self.epochs,
                "gradient_checkpointing": self.gradient_checkpointing,
            }
        )

    def render(self) -> str:
        gb = 2**30
        m = self.memory
        auto = f"  (auto: {', '.join(self.auto)})" if self.auto else ""
        checkpointing = "on" if self.gradient_checkpointing else "off"
        sharded = f" ({self.sharding})" if self.sharding != "none" else ""
        if self.checkpointing_auto:
            checkpointing += (
                " (the estimate exceeds the memory available)"
                if self.gradient_checkpointing
                else " (not needed)"
            )
        return "\n".join(
            [
                f"plan     {self.method} on {self.device} x{self.processes}{sharded}: "
                f"{self.trainable_params / 1e6:,.1f}M of {self.total_params / 1e6:,.1f}M "
                "parameters train",
                f"         {self.tokens_per_epoch:,} tokens/epoch, {self.tokens_per_step:,} "
                f"tokens/step, {self.steps_per_epoch} steps/epoch x {self.epochs:g} epochs = "
                f"{self.total_steps} steps, lr {self.learning_rate:g}{auto}",
                f"         time ~{format_seconds(self.estimated_seconds)} "
                f"({self.flops_per_token / 1e6:,.0f} MFLOP/token)",
                f"         peak memory ~{m.total / gb:.1f} GB of {self.memory_available / gb:.1f} "
                f"GB available (weights {m.weights / gb:.2f}, grads {m.gradients / gb:.2f}, "
                f"optimizer {m.optimizer / gb:.2f}, activations {m.activations / gb:.2f}, "
                f"logits {m.logits / gb:.2f}, cache {m.cache / gb:.2f}, runtime "
                f"{m.runtime / gb:.2f})",
                f"         gradient checkpointing: {checkpointing}",
            ]
        )


# --- automatic choices


def auto_tokens_per_step(total_params: int, dataset_tokens: int, max_seq_len: int) -> int:
    """A bigger budget for bigger models, halved until an epoch has enough steps to learn from."""
    if total_params < 0.5e9:
        budget = 4096
    elif total_params < 3e9:
        budget = 8192
    elif total_params < 15e9:
        budget = 16384
    else:
        budget = 32768
    while budget > max_seq_len and dataset_tokens / budget < MIN_STEPS_PER_EPOCH:
        budget //= 2
    return max(budget, max_seq_len)


def auto_learning_rate(method: str, total_params: int) -> float:
    """3e-4 at the default model's size, smaller for bigger models (full FT faster than LoRA)."""
    ratio = min(1.0, REFERENCE_PARAMS / total_params)
    if method == "full":
        return float(f"{max(1e-5, 3e-4 * math.sqrt(ratio)):.2g}")
    return float(f"{max(1e-4, 3e-4 * ratio**0.25):.2g}")


def auto_epochs(dataset_tokens: int) -> float:
    """Two passes over a small dataset, fewer over big ones. Retrieval brings the facts at
    answer time; training teaches reading and the voice. Measured on the bundled example
    (114k tokens an epoch, bench/RESULTS.md): three epochs against two, tuned+RAG recall
    0.909 / 0.755 against 0.818 / 0.735 (paraphrased / documents), refusal 0.778 both, for
    a third less training time (the README's command is to stay under 30 minutes on 2
    cores)."""
    if dataset_tokens < 1_000_000:
        return 2.0
    if dataset_tokens < 20_000_000:
        return 2.0
    return 1.0


# --- estimates


def flops_per_token(model: ModelShape, data: DataShape) -> float:
    """Training FLOPs per packed token: forward 2N, backward 2N for inputs (+2N for weights)."""
    top = (model.n_layers - model.first_trainable) * model.layer_params
    bottom = model.first_trainable * model.layer_params
    per_param = 4 if model.lora else 6
    row_len = data.tokens / max(1, data.rows)
    # Scores and weighted sum over the whole packed row (the mask does not skip work).
    attention = 4 * row_len * model.hidden * (model.n_layers - model.first_trainable) * 3
    flops = per_param * top + attention
    if not data.cache_bytes:
        flops += 2 * bottom
    # The output layer runs only at labelled positions.
    labelled_share = data.labelled_tokens / max(1, data.tokens)
    flops += (6 if model.head_trainable else 4) * model.head_params * labelled_share
    return float(flops)


def estimate_memory(
    model: ModelShape,
    data: DataShape,
    tokens_per_step: int,
    checkpointing: bool,
    sharding: str = "none",
    processes: int = 1,
) -> MemoryEstimate:
    """Peak bytes of one process training with AdamW (weights as loaded, the rest fp32).

    Sharded, a process keeps 1/N of the gradients and optimizer state, and with
    'fsdp' 1/N of the weights plus the two layers gathered around the one running.
    """
    grad_layers = model.n_layers - model.first_trainable
    # fp32 tensors saved for backward per token in a Llama-style layer: norms, q/k/v,
    # attention output, residuals (~10 x hidden) and the MLP's gate/up/act/product (4 x inter).
    # Attention scores are not kept: torch's fused SDPA kernels (CPU and GPU) save only
    # O(length) statistics, also with the packed block-diagonal mask (measured).
    per_token_layer = (10 * model.hidden + 4 * model.intermediate) * 4
    if checkpointing:
        # Only each layer's input is kept; one layer's activations exist at a time.
        activations = tokens_per_step * (grad_layers * model.hidden * 4 + per_token_layer)
    else:
        activations = tokens_per_step * grad_layers * per_token_layer
    labelled = tokens_per_step * data.labelled_tokens / max(1, data.tokens)
    vocab = model.head_params // max(1, model.hidden)
    # The loss makes its gradient chunk by chunk (train/loss.py): one chunk's logits and
    # log-probabilities exist at a time, and a hidden-state gradient per labelled position.
    logits = int(min(labelled, CHUNK_TOKENS) * vocab * 4 * 2 + labelled * model.hidden * 4)
    shards = processes if sharding != "none" else 1
    weights = model.weight_bytes
    if sharding == "fsdp":
        per_weight = model.weight_bytes / max(1, model.total_params)
        weights = int(weights // shards + 2 * model.layer_params * per_weight)
    return MemoryEstimate(
        weights=weights,
        gradients=model.trainable_params * 4 // shards,
        optimizer=model.trainable_params * 8 // shards,
        activations=int(activations),
        logits=logits,
        cache=data.cache_bytes,
        runtime=int(RUNTIME_BYTES),
    )


class AutoValues(BaseModel):
    """The concrete values of the settings that may be "auto", and which of them were."""

    tokens_per_step: int
    learning_rate: float
    epochs: float
    auto: list[str]


def resolve_auto(
    settings: TrainSettings,
    total_params: int,
    lora: bool,
    dataset_tokens: int,
    lr_scale: float = 1.0,
) -> AutoValues:
    """The one place where "auto" becomes a value, for every recipe, the plan and jobs.

    `total_params` counts the model as it trains (adapters attached);
    `lr_scale` multiplies the learning rate, automatic or not (a job's multiplier).
    """
    auto = [
        name
        for name in ("tokens_per_step", "learning_rate", "epochs")
        if getattr(settings, name) == "auto"
    ]
    tokens_per_step = settings.tokens_per_step
    if tokens_per_step == "auto":
        tokens_per_step = auto_tokens_per_step(total_params, dataset_tokens, settings.max_seq_len)
    lr = settings.learning_rate
    if lr == "auto":
        lr = auto_learning_rate("lora" if lora else "full", total_params)
    epochs = settings.epochs if settings.epochs != "auto" else auto_epochs(dataset_tokens)
    return AutoValues(
        tokens_per_step=tokens_per_step,
        learning_rate=lr * lr_scale,
        epochs=epochs,
        auto=auto,
    )


def make_plan(
    model: ModelShape,
    data: DataShape,
    settings: TrainSettings,
    hardware: Hardware,
    processes: int = 1,
    sharding: str = "none",
    lr_scale: float = 1.0,
) -> TrainPlan:
    """Resolve the "auto" settings and estimate the run they give."""
    values = resolve_auto(settings, model.total_params, model.lora, data.tokens, lr_scale)
    auto, tokens_per_step = values.auto, values.tokens_per_step
    method = "lora" if model.lora else "full"
    lr, epochs = values.learning_rate, values.epochs

    def memory(checkpointing: bool, budget: int) -> MemoryEstimate:
        per_process = max(settings.max_seq_len, budget // processes)
        return estimate_memory(model, data, per_process, checkpointing, sharding, processes)

    checkpointing = settings.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = memory(False, tokens_per_step).total > hardware.memory_bytes
    # Still too big: a smaller automatic step, never below one row.
    while (
        "tokens_per_step" in auto
        and tokens_per_step > settings.max_seq_len
        and memory(checkpointing, tokens_per_step).total > hardware.memory_bytes
    ):
        tokens_per_step //= 2
    tokens_per_step = max(tokens_per_step, settings.max_seq_len)

    rows_per_step = max(1, tokens_per_step // settings.max_seq_len)
    steps_per_epoch = max(1, math.ceil(data.rows / rows_per_step))
    total_steps = max(1, math.ceil(steps_per_epoch * epochs))
    per_token = flops_per_token(model, data)
    trained_tokens = data.tokens * total_steps / steps_per_epoch
    cache_seconds = (
        2 * model.first_trainable * model.layer_params * data.tokens if data.cache_bytes else 0
    ) / hardware.flops_per_s
    seconds = trained_tokens * per_token / (hardware.flops_per_s * EFFICIENCY * processes)
    return TrainPlan(
        method=method,
        device=hardware.device,
        processes=processes,
        sharding=sharding,
        total_params=model.total_params,
        trainable_params=model.trainable_params,
        tokens_per_epoch=data.tokens,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        tokens_per_step=tokens_per_step,
        learning_rate=lr,
        epochs=epochs,
        auto=auto,
        gradient_checkpointing=checkpointing,
        checkpointing_auto=settings.gradient_checkpointing == "auto",
        flops_per_token=per_token,
        estimated_seconds=seconds + cache_seconds,
        memory=memory(checkpointing, tokens_per_step),
        memory_available=hardware.memory_bytes,
    )


# --- measuring the model and the machine


def model_shape(model: torch.nn.Module, first_trainable: int) -> ModelShape:
    decoder, head = decoder_and_head(model)
    config = getattr(model, "config", None) or decoder.config
    return ModelShape(
        total_params=sum(p.numel() for p in model.parameters()),
        weight_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        layer_params=sum(p.numel() for p in decoder.layers[-1].parameters()),
        n_layers=len(decoder.layers),
        first_trainable=first_trainable,
        head_params=head.weight.numel(),
        head_trainable=head.weight.requires_grad,
        hidden=config.hidden_size,
        intermediate=getattr(config, "intermediate_size", 4 * config.hidden_size),
        lora=hasattr(model, "peft_config"),
    )


def detect_hardware(device: str) -> Hardware:
    return Hardware(
        device=device, memory_bytes=available_memory(device), flops_per_s=matmul_rate(device)
    )


def available_memory(device: str) -> int:
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def matmul_rate(device: str, size: int = 512, trials: int = 10) -> float:
    """The device's fp32 matmul FLOP/s when it is ours: the best of a few short trials.

    On a CPU, one thread's rate in its own CPU time, times the threads torch
    uses: wall time on a busy machine measures the other programs too (two
    jobs' thread pools on the same cores measured 20x slower, and the plan said
    hours for a 19-minute run), while a thread's CPU time counts only the time
    it ran. The estimate is for the machine as it is when ours; the first steps'
    real pace corrects it during training (`pipeline.pace`).
    """
    if device != "cpu":
        return _device_matmul_rate(device, size, trials)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up: kernels, caches
        best = float("inf")
        for _ in range(trials):
            start = time.thread_time()
            a @ b
            best = min(best, time.thread_time() - start)
    finally:
        torch.set_num_threads(threads)
    return 2 * size**3 / max(best, 1e-9) * threads


def _device_matmul_rate(device: str, size: int, trials: int) -> float:
    """An accelerator's rate in wall time: the best of the trials."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b  # warm-up: kernels
    best = float("inf")
    for _ in range(trials):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
