"""A trained run -> one standalone safetensors folder that transformers and vLLM load.

The folder carries the tokenizer with the chat template used in training and a
generation config whose eos tokens are the stop tokens used in evaluation, so
whoever loads it renders prompts and stops exactly as the scorecard did.

Memory: the reference model for the parity check *is* the model that gets
merged. peft's `merge_and_unload` adds each LoRA delta into its base weight in
place, layer by layer, so the peak is one copy of the base plus the adapter,
never two full models; `save_pretrained` then writes it in shards of
`MAX_SHARD` so no single file must fit in memory twice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.generate import stop_ids
from shoptalk.models import load_model, load_tokenizer
from shoptalk.train.render import ensure_chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_SHARD = "2GB"


def load_tuned(
    base_path: str, run: RunArtifact, device: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The tuned model as training left it: base + unmerged adapter, or full weights."""
    tokenizer = load_tokenizer(str(run.final))
    ensure_chat_template(tokenizer)
    if not run.is_adapter:
        return load_model(str(run.final), device), tokenizer
    from peft import PeftModel

    return PeftModel.from_pretrained(load_model(base_path, device), str(run.final)), tokenizer


def save_merged(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    target: Path,
    provenance: dict,
) -> PreTrainedModel:
    """Merge (in place) and write `target` atomically; returns the merged model."""
    from peft import PeftModel
    from transformers import GenerationConfig

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, max_shard_size=MAX_SHARD)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "shoptalk-export.json", provenance)
    # The old export is ours (under .shoptalk/exports), never a user's file.
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return model
