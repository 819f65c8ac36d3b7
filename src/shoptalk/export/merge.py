"""A trained run -> one standalone safetensors folder that transformers and vLLM load.

The folder carries the tokenizer with the chat template used in training and a
generation config whose eos tokens are the stop tokens used in evaluation, so
whoever loads it renders prompts and stops exactly as the scorecard did.

Two ways to write the weights:

- shard by shard (`export/stream_merge.py`), the usual one: each safetensors
  shard of the base is read, the LoRA deltas of its weights are added, and it
  is written out before the next is read; the model is never whole in memory.
- in memory (`save_merged` here): peft's `merge_and_unload` on the loaded
  model, for what the streamed merge does not implement (DoRA, a quantized or
  non-safetensors base, ...). It adds each delta into its base weight in
  place, so the peak is one copy of the base plus the adapter.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.modeling.chat_format import ensure_chat_template, stop_ids
from shoptalk.modeling.load import load_model, load_tokenizer

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

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

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.generation_config = generation_config(tokenizer)
    tmp = fresh_tmp(target)
    model.save_pretrained(tmp, max_shard_size=MAX_SHARD)
    finish_folder(tmp, target, tokenizer, provenance)
    return model


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Greedy, stopping at the stop tokens the scorecard stopped at."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def fresh_tmp(target: Path) -> Path:
    """An empty sibling folder to write into; renamed to `target` when complete."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def finish_folder(
    tmp: Path, target: Path, tokenizer: PreTrainedTokenizerBase, provenance: dict
) -> None:
    """Add the tokenizer (with its chat template) and provenance, then swap `tmp` in."""
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "shoptalk-export.json", provenance)
    # The old export is ours (under .shoptalk/exports), never a user's file.
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
