"""Training methods: which weights train, and how the base model is loaded for them.

| method | what trains                                     | base weights          |
| ------ | ----------------------------------------------- | --------------------- |
| lora   | LoRA adapters (rsLoRA/DoRA switches)            | frozen, bf16 on GPUs  |
| qlora  | LoRA adapters                                   | frozen, 4-bit (CUDA)  |
| full   | every weight of the top `trainable_layers`      | trained, fp32         |

Every recipe (sft, cpt, dpo) loads its model with `load_for_method` and picks
its weights with `attach_method`, so a method means the same thing everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoptalk.config import TrainSettings
from shoptalk.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, PreTrainedModel

QLORA_NEEDS = (
    "train.method 'qlora' loads the base model in 4 bits with bitsandbytes, which needs a CUDA "
    "GPU; {found}. Use `method: lora` in shoptalk.yaml (the same adapters on an unquantized "
    "base: more memory, same result), or run on a machine with an NVIDIA GPU and "
    "`pip install bitsandbytes`."
)


def check_method(settings: TrainSettings, device: str) -> None:
    """Fail before any work when the method cannot run on this machine."""
    if settings.method != "qlora":
        return
    import torch

    if not (device.startswith("cuda") and torch.cuda.is_available()):
        raise ConfigError(QLORA_NEEDS.format(found=f"this run's device is '{device}'"))
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(QLORA_NEEDS.format(found="bitsandbytes is not installed"))


def quantization_config(device: str) -> BitsAndBytesConfig:
    """NF4 weights with double quantization, computing in bf16 where the GPU has it (QLoRA paper)."""
    import torch
    from transformers import BitsAndBytesConfig

    from shoptalk.modeling.load import pick_dtype

    compute = torch.bfloat16 if pick_dtype(device) == torch.bfloat16 else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def load_for_method(path: str, settings: TrainSettings, device: str) -> PreTrainedModel:
    """The base model as the method trains it: frozen weights in bf16 where the GPU has it
    (`pick_dtype`: fp32 on a CPU), trained weights fp32, 4-bit for QLoRA."""
    import torch

    from shoptalk.modeling.load import load_model, pick_dtype

    check_method(settings, device)
    if settings.method == "full":
        # AdamW updates too small for bf16's 8-bit mantissa would be lost: fp32 weights.
        return load_model(path, device, dtype=torch.float32)
    if settings.method == "lora":
        # Frozen, so half the memory costs nothing in the update; peft keeps the adapters
        # themselves in fp32 (`autocast_adapter_dtype`), as LoRA recipes do on GPUs.
        return load_model(path, device, dtype=pick_dtype(device))
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=quantization_config(device), device_map={"": device}
    )
    # Gradient checkpointing off: our models are small and it costs 1.3x the time.
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def lora_config(settings: TrainSettings, layers: list[int] | None) -> LoraConfig:
    from peft import LoraConfig

    lora = settings.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        layers_to_transform=layers,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        task_type="CAUSAL_LM",
    )


def attach_method(model: torch.nn.Module, settings: TrainSettings) -> tuple[torch.nn.Module, int]:
    """LoRA adapters or full weights, on all layers or the top `trainable_layers`.

    Returns the model to train and the index of its first trainable layer. A
    model that already has adapters (a LoRA SFT run that DPO continues) keeps
    training them.
    """
    n_layers = model.config.num_hidden_layers
    first = max(0, n_layers - (settings.trainable_layers or n_layers))
    if hasattr(model, "peft_config"):
        return model, first
    if settings.method == "full":
        from shoptalk.train.frozen import freeze_bottom

        if first:
            freeze_bottom(model, n_layers - first)
        return model, first
    from peft import get_peft_model

    layers = list(range(first, n_layers)) if first else None
    targets = settings.lora.target_modules
    if layers and targets == "all-linear":
        # peft refuses layers_to_transform with a string target; name the layers instead.
        targets = linear_layer_names(model)
    lora = settings.lora.model_copy(update={"target_modules": targets})
    return get_peft_model(
        model, lora_config(settings.model_copy(update={"lora": lora}), layers)
    ), first


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """What peft's "all-linear" means: every linear layer's name except the output layer's."""
    import torch

    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )
