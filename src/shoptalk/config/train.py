"""The `train:` section, with the keys each recipe reads and the checks that go with them.

One section serves three recipes (the YAML shape users have), but not every key
means something to every recipe: DPO has its own epochs and learning rate under
`train.dpo` and runs none of the SFT loop's extras (evaluation, early stopping,
the frozen-layer cache, trackers, sharding). A key's `recipes` (in its field's
schema extra; every recipe when absent) says who reads it, and a key set to a
non-default value that the chosen recipe does not read is an error naming both,
never a setting that silently does nothing. docs/config.md shows the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic.fields import FieldInfo

from shoptalk.errors import ConfigError

Recipe = Literal["sft", "cpt", "dpo"]
RECIPES: tuple[Recipe, ...] = ("sft", "cpt", "dpo")


def used_by(*recipes: Recipe) -> dict[str, Any]:
    """A field's schema extra naming the recipes that read it."""
    return {"recipes": list(recipes)}


# The SFT loop's own keys: SFT and CPT (which is the SFT loop on document text) read them.
SFT_LOOP = used_by("sft", "cpt")
# Where DPO reads what these keys set for SFT.
DPO_INSTEAD = {"epochs": "train.dpo.epochs", "learning_rate": "train.dpo.learning_rate"}


class LoraSettings(BaseModel, extra="forbid"):
    r: int = Field(64, ge=1, description="LoRA rank")
    alpha: int = Field(128, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input")
    target_modules: str | list[str] = Field(
        "all-linear",
        description="Which layers get adapters: 'all-linear' (every linear layer but the "
        "output layer) or a list of module names such as [q_proj, v_proj]",
    )
    use_rslora: bool = Field(
        False, description="rsLoRA: scale by alpha / sqrt(r), which keeps high ranks learning"
    )
    use_dora: bool = Field(
        False,
        description="DoRA: also learn each weight's magnitude (slower; can beat LoRA at low r)",
    )


class DpoSettings(BaseModel, extra="forbid"):
    beta: float = Field(
        0.1, gt=0, description="How far the model may move from the reference (smaller = further)"
    )
    loss: Literal["sigmoid", "ipo"] = Field(
        "sigmoid", description="'sigmoid' (the DPO paper) or 'ipo' (squared, length-normalized)"
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the preference pairs")
    learning_rate: float = Field(
        1e-5, gt=0, description="Peak learning rate; DPO wants a much smaller one than SFT"
    )


class TrainSettings(BaseModel, extra="forbid"):
    # Defaults measured on the bundled example with the default model on a
    # 2-core CPU (bench/RESULTS.md): full fine-tuning of the top 16 layers
    # teaches facts that LoRA at the same cost did not.
    method: Literal["lora", "qlora", "full"] = Field(
        "full",
        description="'lora' adapters, 'qlora' (LoRA on a 4-bit base; needs a CUDA GPU and "
        "bitsandbytes) or 'full' fine-tuning",
    )
    recipe: Recipe = Field(
        "sft",
        description="'sft': train on conversations and document text, then DPO on top when "
        "preference pairs exist; 'cpt': continued pretraining on document text alone (loss on "
        "every token); 'dpo': DPO alone, from the base model",
    )
    dpo: DpoSettings = Field(
        default_factory=DpoSettings,
        description="Direct preference optimization on sources.preferences: the 'dpo' recipe, "
        "and the stage that follows SFT when preference pairs exist",
        json_schema_extra=used_by("sft", "dpo"),
    )
    lora: LoraSettings = Field(
        default_factory=LoraSettings,
        description="The adapters of method 'lora' and 'qlora' (unused by 'full')",
    )
    trainable_layers: int | None = Field(
        16,
        ge=1,
        description="Train only the top N decoder layers (none = all); the frozen ones run once and are cached",
    )
    cache_gb: float = Field(
        4.0,
        ge=0,
        description="Memory allowed for cached outputs of frozen layers, in GB",
        json_schema_extra=SFT_LOOP,
    )
    epochs: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="Passes over the training data; 'auto' = from the dataset size",
        json_schema_extra=SFT_LOOP,
    )
    learning_rate: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="Peak learning rate; 'auto' = from the method and model size",
        json_schema_extra=SFT_LOOP,
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up")
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW weight decay on the trained weights (0 = none)"
    )
    max_seq_len: int = Field(512, ge=16, description="Longest packed sequence, in tokens")
    tokens_per_step: Annotated[int, Field(ge=16)] | Literal["auto"] = Field(
        "auto",
        description="Token budget of one optimizer step (over all processes); 'auto' = from "
        "the model size, dataset size and memory",
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass; 'auto' = only when "
        "the memory estimate exceeds the memory available",
        json_schema_extra=SFT_LOOP,
    )
    seed: int = Field(
        0, description="Seed of the weight initialization (adapters) and of the data order"
    )
    groups: list[str] = Field(
        default_factory=list,
        description="The model learns the documents (and FAQ, chats) these groups may read, by "
        "the rule of docs/permissions.md; [] = only those open to all. A key is served the "
        "model only if it holds every group listed here: what a model learnt, it may tell "
        "anyone who can ask it",
    )
    checkpoint_every: int = Field(25, ge=1, description="Steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep")
    eval_every: int | None = Field(
        None,
        ge=1,
        description="Steps between validation losses; none = at each checkpoint",
        json_schema_extra=SFT_LOOP,
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many evaluations without a better validation loss and "
        "keep the best weights as final; none = train all epochs",
        json_schema_extra=SFT_LOOP,
    )
    early_stopping_min_delta: float = Field(
        0.0,
        ge=0,
        description="How much lower a validation loss must be to count as better",
        json_schema_extra=SFT_LOOP,
    )
    trackers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Also log metrics to TensorBoard (run folder/tensorboard) or MLflow "
        "(MLFLOW_TRACKING_URI, default ./mlruns); needs the 'tensorboard' or 'mlflow' extra",
        json_schema_extra=SFT_LOOP,
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    sharding: Literal["auto", "none", "fsdp", "fsdp-grad-op"] = Field(
        "auto",
        description="With several processes, split the model across them (FSDP2): 'fsdp' shards "
        "weights, gradients and optimizer state (~ZeRO-3), 'fsdp-grad-op' gradients and "
        "optimizer state (~ZeRO-2), 'none' trains data-parallel; 'auto' = what the accelerate "
        "config says, else 'none'",
        json_schema_extra=SFT_LOOP,
    )

    @model_validator(mode="after")
    def _recipe_reads_every_key_set(self) -> TrainSettings:
        problems = unused_keys(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def recipes_reading(field: FieldInfo) -> tuple[str, ...]:
    """The recipes that read a train key (every recipe unless its field names some)."""
    extra = field.json_schema_extra
    return tuple(extra["recipes"]) if isinstance(extra, dict) else RECIPES


def keys_of(recipe: Recipe) -> list[str]:
    """The train keys `recipe` reads, in the order of the section."""
    fields = TrainSettings.model_fields
    return [name for name, field in fields.items() if recipe in recipes_reading(field)]


def unused_keys(train: TrainSettings) -> list[str]:
    """One message per key set to a non-default value that `train.recipe` does not read."""
    problems = []
    for name, field in TrainSettings.model_fields.items():
        readers = recipes_reading(field)
        value = getattr(train, name)
        if train.recipe in readers or value == field.get_default(call_default_factory=True):
            continue
        instead = DPO_INSTEAD.get(name) if train.recipe == "dpo" else None
        fix = f"set {instead} instead" if instead else "remove it"
        shown = value.model_dump() if isinstance(value, BaseModel) else value
        problems.append(
            f"train.{name} is set ({shown!r}) but train.recipe '{train.recipe}' does not use it "
            f"(only {', '.join(repr(r) for r in readers)} do): {fix}"
        )
    return problems


def world_size(env: Mapping[str, str]) -> int:
    """How many processes the launcher (torchrun, accelerate launch) started; 1 without one."""
    return int(env.get("WORLD_SIZE", "1") or 1)


def refuse_dpo_processes(processes: int) -> None:
    """Raise when DPO is launched on several processes (it runs in one)."""
    if processes > 1:
        raise ConfigError(
            f"DPO runs in one process, but this launch started {processes} (WORLD_SIZE="
            f"{processes}): the processes would train in the same run folder and resume from "
            "each other's checkpoints. Run it without torchrun or `accelerate launch`."
        )


def check_launch(train: TrainSettings, has_preferences: bool, env: Mapping[str, str]) -> None:
    """Refuse a multi-process launch the recipe cannot do, before any work starts.

    `sft` with preference sources ends with a DPO stage, so it is refused too:
    better now than after the SFT stage has run.
    """
    processes = world_size(env)
    if train.recipe == "dpo":
        refuse_dpo_processes(processes)
    elif train.recipe == "sft" and has_preferences and processes > 1:
        raise ConfigError(
            f"train.recipe 'sft' with sources.preferences ends with a DPO stage, which runs in "
            f"one process, but this launch started {processes} (WORLD_SIZE={processes}). "
            "Run the build in one process, or train SFT on several processes without "
            "sources.preferences."
        )
