"""Merge a LoRA adapter into a safetensors base shard by shard: peak memory is one shard.

For each shard of the base: read its tensors, add `B @ A * scaling` to the
weights the adapter trained, write the shard, let it go. The output keeps the
base's shard layout, so the index maps every tensor to the same file name.
A full fine-tune (no adapter) goes through the same loop as a copy.

peft's own merge needs the whole model loaded; this is our own code because
exporting a model must not need more memory than serving it. It implements
plain LoRA on linear layers only and computes exactly what peft's
`merge_and_unload` computes (tests/export/test_stream_merge.py compares them
tensor by tensor). `streaming_blocker` names anything else, and the export then
falls back to peft's in-memory merge rather than guessing at it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.export import ExportError
from shoptalk.export.merge import finish_folder, fresh_tmp, generation_config

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
# peft saves `base_model.model.<module>.lora_A.weight` for a module `<module>`.
ADAPTER_PREFIX = "base_model.model."
LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"
# adapter_config.json keys that do not change the merged weights: bookkeeping,
# which modules got an adapter (the file says that), dropout, and the two
# settings the merge below implements. Any other key that is set (use_dora,
# lora_bias, rank_pattern, layer_replication, a key newer than this list...)
# sends the merge to peft.
MERGE_NEUTRAL = {
    "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path",
    "revision", "inference_mode", "r", "lora_alpha", "lora_dropout", "target_modules",
    "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save",
    "megatron_core", "runtime_config", "qalora_group_size", "ensure_weight_tying",
    "fan_in_fan_out", "use_rslora", "bias", "init_lora_weights",
}  # fmt: skip
# Initializations that only set the starting A and B. PiSSA, OLoRA, LoftQ, EVA...
# also rewrite the base weights, which a merge onto the original base must undo.
PLAIN_INITS = (True, False, "gaussian")


@dataclass
class Lora:
    """The adapter's pairs by base weight name, and how peft scales them."""

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]  # weight name -> (A, B)
    scaling: float
    fan_in_fan_out: bool


def weight_files(folder: Path) -> list[Path]:
    """The safetensors shards of a local model folder, in order; [] if it has none."""
    if (folder / INDEX).is_file():
        weight_map = json.loads((folder / INDEX).read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    return [folder / SINGLE] if (folder / SINGLE).is_file() else []


def streaming_blocker(weights_dir: str, adapter_dir: Path | None) -> str | None:
    """Why this model cannot be merged shard by shard, or None if it can."""
    folder = Path(weights_dir)
    if not weight_files(folder):
        return f"{weights_dir} is not a local folder of safetensors weights"
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        return "the base model is quantized"
    if not config.get("architectures"):
        return "the base model's config.json names no architecture"
    if renamed_on_load(config):
        # The adapter names modules as transformers builds them, the shards as
        # they were saved; for these architectures the two differ.
        return f"transformers converts {config.get('model_type')} weights while loading them"
    if adapter_dir is None:
        return None
    return adapter_blocker(adapter_dir, base_keys(folder))


def renamed_on_load(config: dict) -> bool:
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    names = [config.get("model_type"), *config.get("architectures", [])]
    return any(name and get_checkpoint_conversion_mapping(name) for name in names)


def base_keys(folder: Path) -> set[str]:
    from safetensors import safe_open

    if (folder / INDEX).is_file():
        return set(json.loads((folder / INDEX).read_text(encoding="utf-8"))["weight_map"])
    with safe_open(folder / SINGLE, framework="pt") as f:
        return set(f.keys())


def adapter_blocker(adapter_dir: Path, base: set[str]) -> str | None:
    """Why the adapter is not plain LoRA on weights the base files hold, or None."""
    from safetensors import safe_open

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        return f"the adapter is {config.get('peft_type')}, not LoRA"
    if config.get("use_dora"):
        # DoRA rescales each merged column to a learned magnitude; peft implements that.
        return "the adapter is DoRA"
    if config.get("init_lora_weights", True) not in PLAIN_INITS:
        return f"init_lora_weights={config['init_lora_weights']!r} also changes the base weights"
    if config.get("bias", "none") != "none":
        return f"bias={config['bias']!r} trains base biases too"
    extras = sorted(k for k, v in config.items() if k not in MERGE_NEUTRAL and v)
    if extras:
        return f"the adapter sets {', '.join(extras)}"
    if not (adapter_dir / ADAPTER_FILE).is_file():
        return f"the adapter has no {ADAPTER_FILE}"
    with safe_open(adapter_dir / ADAPTER_FILE, framework="pt") as f:
        keys = list(f.keys())
    other = [k for k in keys if not (k.startswith(ADAPTER_PREFIX) and k.endswith((LORA_A, LORA_B)))]
    if other:
        return f"the adapter holds more than LoRA pairs, e.g. {other[0]}"
    missing = sorted({base_weight(k) for k in keys} - base)
    if missing:
        # E.g. LoRA on an lm_head tied to the embeddings, which the shards store once.
        return f"the adapter trains {missing[0]}, which the base's files do not hold"
    return None


def base_weight(adapter_key: str) -> str:
    """`base_model.model.x.q_proj.lora_A.weight` -> `x.q_proj.weight`."""
    module = adapter_key.removeprefix(ADAPTER_PREFIX).removesuffix(LORA_A).removesuffix(LORA_B)
    return f"{module}.weight"


def load_lora(adapter_dir: Path) -> Lora:
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    tensors = load_file(adapter_dir / ADAPTER_FILE)
    pairs = {}
    for key in tensors:
        if key.endswith(LORA_A):
            pairs[base_weight(key)] = (tensors[key], tensors[key.removesuffix(LORA_A) + LORA_B])
    r, alpha = config["r"], config["lora_alpha"]
    # As peft's LoraLayer.update_layer: rsLoRA scales by alpha / sqrt(r).
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    return Lora(pairs, scaling, bool(config.get("fan_in_fan_out")))


def stream_merge(
    weights_dir: str,
    adapter_dir: Path | None,
    target: Path,
    dtype: torch.dtype,
    tokenizer: PreTrainedTokenizerBase,
    provenance: dict,
) -> None:
    """Write `target` (atomically) with every floating tensor in `dtype`, as the model ran."""
    folder = Path(weights_dir)
    lora = load_lora(adapter_dir) if adapter_dir else Lora({}, 1.0, False)
    files = weight_files(folder)
    tmp = fresh_tmp(target)
    weight_map: dict[str, str] = {}
    total_size = total_parameters = 0
    for n, source in enumerate(files, 1):
        log.info("merging shard %d/%d: %s", n, len(files), source.name)
        written = merge_shard(source, tmp / source.name, lora, dtype)
        weight_map |= dict.fromkeys(written, source.name)
        total_size += sum(nbytes for _, nbytes in written.values())
        total_parameters += sum(numel for numel, _ in written.values())
    if (folder / INDEX).is_file():
        index = {
            "metadata": {"total_parameters": total_parameters, "total_size": total_size},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (tmp / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_config(folder, tmp, dtype)
    generation_config(tokenizer).save_pretrained(tmp)
    finish_folder(tmp, target, tokenizer, provenance)


def merge_shard(
    source: Path, out: Path, lora: Lora, dtype: torch.dtype
) -> dict[str, tuple[int, int]]:
    """One shard in, one shard out; returns each tensor's (numel, bytes) written."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors = {}
    with safe_open(source, framework="pt") as f:
        names = f.keys()  # safe_open is not iterable
        for name in names:
            tensor = f.get_tensor(name)
            if tensor.is_floating_point():
                tensor = tensor.to(dtype)
            if name in lora.pairs:
                tensor = merged_weight(name, tensor, lora)
            tensors[name] = tensor.contiguous()
    save_file(tensors, out, metadata={"format": "pt"})
    return {k: (t.numel(), t.numel() * t.element_size()) for k, t in tensors.items()}


def merged_weight(name: str, weight: torch.Tensor, lora: Lora) -> torch.Tensor:
    """W + B @ A * scaling, computed as peft's LoRA Linear.get_delta_weight does on CPU."""
    a, b = lora.pairs[name]
    delta = b.float() @ a.float()
    if lora.fan_in_fan_out:
        delta = delta.T
    delta = delta * lora.scaling
    if delta.shape != weight.shape:
        raise ExportError(
            f"The adapter does not fit its base model: {name} is {tuple(weight.shape)} in the "
            f"base but the adapter's update is {tuple(delta.shape)}. Was it trained on another base?"
        )
    return (weight.float() + delta).to(weight.dtype)


def write_config(folder: Path, tmp: Path, dtype: torch.dtype) -> None:
    """The base's config.json, with the dtype the weights are now in (as save_pretrained does)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    config.dtype = str(dtype).removeprefix("torch.")
    config.save_pretrained(tmp)
