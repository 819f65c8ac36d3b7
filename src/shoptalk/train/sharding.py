"""Sharded training with PyTorch FSDP2: each process keeps 1/N of what training holds in memory.

| train.sharding | each of N processes holds                              | DeepSpeed name |
| -------------- | ------------------------------------------------------ | -------------- |
| none           | all weights, gradients and optimizer state (plain DDP) | -              |
| fsdp           | 1/N of weights, gradients and optimizer state; a layer's weights are gathered for its forward and again for its backward | ZeRO-3 |
| fsdp-grad-op   | 1/N of gradients and optimizer state; weights gathered once per step, kept until the backward pass ends | ZeRO-2 |

Each decoder layer is one FSDP unit, gathered just before it runs; everything
else (embeddings, final norm, output layer, tied or not) is the root unit. The
root is `LabelledLoss`, whose forward is the loss: train/loss.py calls the
decoder body and the output layer itself, so the model's own forward never
runs, and FSDP needs one forward through its root per step to gather the root's
weights and to reduce their gradients after the backward pass.

Gradients keep the exact token-weighted mean of unsharded training: every
process backpropagates the sum of its token losses divided by the labelled
tokens of all processes, and FSDP adds the pieces up (divide factor 1).

Checkpoints and the final model hold full weights gathered to the main process
(torch.distributed.checkpoint's state-dict helpers), so a sharded run resumes
and its model loads like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import torch

from shoptalk.config import TrainSettings
from shoptalk.errors import ConfigError
from shoptalk.train.checkpoint import Trainable
from shoptalk.train.distributed import Processes
from shoptalk.train.loss import LabelledLoss, decoder_and_head

if TYPE_CHECKING:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

log = logging.getLogger(__name__)

Sharding = Literal["none", "fsdp", "fsdp-grad-op"]

# accelerate's `fsdp_reshard_after_forward` (FSDP2), lower case.
FSDP2_RESHARD: dict[str, Sharding] = {
    **dict.fromkeys(("true", "1", "yes"), "fsdp"),
    **dict.fromkeys(("false", "0", "no"), "fsdp-grad-op"),
}
# Its `fsdp_sharding_strategy` (FSDP1), by name or number; hybrid modes shard across all.
FSDP1_STRATEGIES: dict[str, Sharding] = {
    **dict.fromkeys(("full_shard", "1", "hybrid_shard", "4"), "fsdp"),
    **dict.fromkeys(("shard_grad_op", "2", "_hybrid_shard_zero2", "5"), "fsdp-grad-op"),
    **dict.fromkeys(("no_shard", "3"), "none"),
}
ZERO_STAGES: dict[str, Sharding] = {"0": "none", "1": "none", "2": "fsdp-grad-op", "3": "fsdp"}


def choose(settings: TrainSettings, procs: Processes, env: Mapping[str, str]) -> Sharding:
    """The sharding mode of this run: `train.sharding`, or with 'auto' what the launcher asked for."""
    mode = from_launcher(env) if settings.sharding == "auto" else settings.sharding
    if mode == "none":
        return mode
    if not procs.distributed:
        log.info("sharding '%s' asked for, but this is one process: nothing to shard", mode)
        return "none"
    if settings.method == "qlora":
        raise ConfigError(
            f"train.method 'qlora' cannot be sharded (sharding '{mode}'): its 4-bit weights are "
            "not FSDP-shardable here. Use `method: lora` with sharding, or `sharding: none`."
        )
    return mode


def from_launcher(env: Mapping[str, str]) -> Sharding:
    """What an `accelerate launch` config asked for (torchrun asks for nothing: 'none')."""
    if env.get("ACCELERATE_USE_FSDP") == "true":
        if env.get("FSDP_VERSION") == "1":
            name, table, default = "FSDP_SHARDING_STRATEGY", FSDP1_STRATEGIES, "FULL_SHARD"
        else:
            name, table, default = "FSDP_RESHARD_AFTER_FORWARD", FSDP2_RESHARD, "true"
        value = env.get(name, default)
        mode = table.get(value.lower())
        if mode is None:
            raise ConfigError(
                f"accelerate launch set {name}={value!r}; expected one of {sorted(table)} "
                f"({name.lower()} in the accelerate config's fsdp_config)"
            )
        if env.get("FSDP_OFFLOAD_PARAMS") == "true":
            log.warning("fsdp_offload_params is not supported by shoptalk's loop and is ignored")
        return mode
    if env.get("ACCELERATE_USE_DEEPSPEED") == "true":
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "")
        mode = ZERO_STAGES.get(stage)
        if mode is None:
            raise ConfigError(
                f"accelerate launch set ACCELERATE_DEEPSPEED_ZERO_STAGE={stage!r}; expected 0-3"
            )
        # DeepSpeed's engine would replace our loop (loss, packing, checkpoints); FSDP2 shards
        # the same things inside it.
        log.warning(
            "accelerate launched this run for DeepSpeed ZeRO-%s; shoptalk trains it with the "
            "equivalent PyTorch mode instead: sharding '%s' (see configs/accelerate/)",
            stage,
            mode,
        )
        return mode
    return "none"


def shard(model: torch.nn.Module, mode: Sharding, procs: Processes, device: str) -> LabelledLoss:
    """Shard `model` in place across the processes; returns the loss module to train through."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    mesh = init_device_mesh(torch.device(device).type, (procs.world_size,))
    keep_gathered = mode == "fsdp-grad-op"
    decoder, _ = decoder_and_head(model)
    for layer in decoder.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=not keep_gathered)
    root = LabelledLoss(model)
    # The root keeps its weights gathered between forward and backward in both modes.
    fully_shard(root, mesh=mesh, reshard_after_forward=False)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            # Sum, not mean: each process's gradient is already its share of the global mean.
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    log.info(
        "FSDP2 '%s': %d decoder layers and the root sharded over %d processes",
        mode,
        len(decoder.layers),
        procs.world_size,
    )
    return root


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def _options(**kwargs: bool) -> StateDictOptions:
    """Full tensors, not shards: what checkpoints and the final model hold."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


class ShardedTrainable(Trainable):
    """The trainable weights and optimizer state of a sharded model, as full tensors.

    Getting is collective (every process calls it) and returns the full state
    on the main process, empty dicts elsewhere; loading takes the full state on
    every process, each keeping its shard. Optimizer state is keyed by
    parameter name.
    """

    sharded = True

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer

    def weights(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        options = _options(cpu_offload=True, ignore_frozen_params=True)
        return get_model_state_dict(self.model, options=options)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(self.model, weights, options=_options(strict=False))

    def optimizer_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        options = _options(cpu_offload=True)
        return get_optimizer_state_dict(self.model, self.optimizer, options=options)

    def load_optimizer_state(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.model, self.optimizer, state, options=_options())

    def model_state(self) -> dict[str, torch.Tensor]:
        """Every weight, frozen ones too, for the final model."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.model, options=_options(cpu_offload=True))
