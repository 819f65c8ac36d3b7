"""llama.cpp's quantizer, through llama-cpp-python: the k-quants Ollama users expect.

Loading and answering with a GGUF (the parity check's `GgufChat`) is the
modeling layer's GGUF runtime, `shoptalk.modeling.gguf`, which the serving
engine uses too.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

from shoptalk.export import ExportError
from shoptalk.modeling.gguf import machine_threads, require_llama_cpp

# The 4-bit to 6-bit k-quants Ollama users expect; llama.cpp's quantizer writes them
# from an f32/f16/bf16 GGUF. Names as `llama-quantize` spells them, lower-case.
K_QUANTS = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def quantize(
    source: Path, target: Path, quant: str, log_file: Path, n_threads: int | None = None
) -> Path:
    """Write `target` as `quant` (a k-quant) from an f32/f16/bf16 GGUF with llama.cpp's quantizer.

    llama.cpp's defaults for the type (as `llama-quantize` uses them): it keeps
    the tensors a k-quant would hurt most at more bits, and falls back to a
    legacy type for rows whose width is not a multiple of 256. What it says
    about each tensor goes to `log_file`.
    """
    llama_cpp = require_llama_cpp(f"--quant {quant}")
    if quant not in K_QUANTS:
        raise ExportError(f"--quant {quant!r}: expected one of {', '.join(K_QUANTS)}.")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, K_QUANTS[quant])
    params.nthread = n_threads or machine_threads()
    tmp = target.with_name(f".{target.name}.tmp")
    with llama_log_to(log_file):
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(tmp).encode(), ctypes.byref(params)
        )
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"llama.cpp could not quantize {source.name} to {quant} (status {status}). "
            f"Log: {log_file}"
        )
    os.replace(tmp, target)
    return target


@contextmanager
def llama_log_to(log_file: Path) -> Iterator[None]:
    """llama.cpp's log lines (info and up) into `log_file` instead of the terminal.

    llama-cpp-python hands llama.cpp's log to Python, which prints it to
    `sys.stderr` when its logger's level lets it through.
    """
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with log_file.open("w", encoding="utf-8") as out, redirect_stderr(out):
            yield
    finally:
        logger.setLevel(level)
