"""llama.cpp itself, through llama-cpp-python: load a GGUF as its users run it, answer, quantize.

`GgufChat` is a GGUF loaded on the CPU with what the file carries: its chat
template (rendered the way llama-cpp-python renders it for
`create_chat_completion`), its tokenizer and its end-of-generation tokens.
The export's parity check answers with it; anything else that runs an
exported GGUF can too, so both see the same prompt text and stop tokens.

llama-cpp-python is an optional extra (`scripts/setup.sh --llamacpp`): it
compiles llama.cpp from source, once, and is imported only here, late.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from shoptalk.errors import MissingExtraError
from shoptalk.export import ExportError

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

INSTALL_HINT = (
    "run `bash scripts/setup.sh --llamacpp` (the first run compiles llama.cpp: 10-20 minutes; "
    "later runs reuse the wheel it keeps in ~/.cache/shoptalk/wheels)"
)
# How many of the best tokens at each step an answer records (the parity check's near ties).
CLOSE = 5
# The 4-bit to 6-bit k-quants Ollama users expect; llama.cpp's quantizer writes them
# from an f32/f16/bf16 GGUF. Names as `llama-quantize` spells them, lower-case.
K_QUANTS = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_k_s": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}


def require_llama_cpp(why: str = "This") -> ModuleType:
    """The `llama_cpp` module, or a MissingExtraError that says how to install it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingExtraError(
            f"{why} needs llama.cpp (the Python package llama-cpp-python), which is not "
            f"installed: {INSTALL_HINT}."
        ) from exc
    return llama_cpp


def machine_threads() -> int:
    """The cores this process may run on (a container's limit, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class Greedy:
    """One greedy answer: its tokens (the stop token included) and what llama.cpp saw."""

    tokens: list[int]
    first_logits: np.ndarray  # [vocab]: the logits at the first generated position
    margins: list[float]  # top-1 minus top-2 logit at each generated token
    close: list[dict[int, float]]  # the next best tokens there -> how far below the top


class GgufChat:
    """A GGUF file loaded in llama.cpp on the CPU, with its own template, tokenizer and stops."""

    def __init__(self, path: Path, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        llama_cpp = require_llama_cpp(f"Loading {path.name}")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = path
        # CPU only and one sequence: the same file gives the same greedy answer every run.
        self.llm: Llama = llama_cpp.Llama(
            str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or machine_threads(),
            n_gpu_layers=0,
            seed=0,
            verbose=False,
        )
        self.template: str | None = self.llm.metadata.get("tokenizer.chat_template")
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        # What llama.cpp itself ends a generation at (its end-of-generation set).
        self.stop_ids = [
            i for i in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)
        ]
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self._formatter = None
        if self.template:
            self._formatter = Jinja2ChatFormatter(
                template=self.template,
                eos_token=self.token_text(eos) if eos >= 0 else "",
                bos_token=self.token_text(bos) if bos >= 0 else "",
                stop_token_ids=self.stop_ids,
            )

    def token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for `messages`, from the chat template the file carries."""
        if self._formatter is None:
            raise ExportError(
                f"{self.path} carries no chat template (tokenizer.chat_template), so a llama.cpp "
                "user would get a guessed prompt format."
            )
        return self._formatter(messages=messages).prompt

    def encode(self, text: str) -> list[int]:
        # The rendered template already holds every special token it wants.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def decode(self, tokens: list[int]) -> str:
        text = self.llm.detokenize([t for t in tokens if t not in self.stop_ids])
        return text.decode("utf-8", errors="replace")

    def greedy(self, prompt: list[int], max_new_tokens: int) -> Greedy:
        """Argmax token by token until a stop token or `max_new_tokens`."""
        import numpy as np

        llama_cpp = require_llama_cpp()
        llm = self.llm
        if len(prompt) + max_new_tokens > llm.n_ctx():
            raise ExportError(
                f"A prompt of {len(prompt)} tokens plus {max_new_tokens} new ones does not fit "
                f"llama.cpp's context of {llm.n_ctx()} tokens."
            )
        llm.reset()
        llm.eval(prompt)
        tokens: list[int] = []
        margins: list[float] = []
        close: list[dict[int, float]] = []
        first: np.ndarray | None = None
        for _ in range(max_new_tokens):
            pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))
            if first is None:
                first = logits.copy()
            # Best first; of equal logits the lowest id, as argmax takes it.
            best = sorted(np.argpartition(logits, -CLOSE)[-CLOSE:], key=lambda t: (-logits[t], t))
            top = int(best[0])
            gaps = {int(t): float(logits[top] - logits[t]) for t in best[1:]}
            tokens.append(top)
            margins.append(gaps[int(best[1])])
            close.append(gaps)
            if top in self.stop_ids:
                break
            llm.eval([top])
        assert first is not None
        return Greedy(tokens, first, margins, close)

    def close(self) -> None:
        self.llm.close()

    def __enter__(self) -> GgufChat:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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
