"""GGUF files in llama.cpp (llama-cpp-python): the one runtime for every stage that runs one.

`load_llama` loads a GGUF on the CPU (the serving engine's contexts and
`GgufChat` alike). `GgufChat` is a GGUF with what the file carries: its chat
template (rendered the way llama-cpp-python renders it for
`create_chat_completion`), its tokenizer and its end-of-generation tokens.
The export's parity check answers with it; anything else that runs an
exported GGUF as its users do can too, so all see the same prompt text and
stop tokens.

llama-cpp-python is an optional extra (`scripts/setup.sh --llamacpp`): it
compiles llama.cpp from source, once, and is imported only here, late.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from shoptalk.errors import MissingExtraError, ModelError

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

INSTALL_HINT = (
    "run `bash scripts/setup.sh --llamacpp` (the first run compiles llama.cpp: 10-20 minutes; "
    "later runs reuse the wheel it keeps in ~/.cache/shoptalk/wheels)"
)
# How many of the best tokens at each step an answer records (the parity check's near ties).
CLOSE = 5


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


def load_llama(path: Path, n_ctx: int, n_threads: int, **options: Any) -> Llama:
    """`path` in llama.cpp on the CPU, quietly; `options` go to `llama_cpp.Llama` as they are."""
    llama_cpp = require_llama_cpp(f"Loading {path.name}")
    return llama_cpp.Llama(
        str(path), n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=0, verbose=False, **options
    )


class GgufChat:
    """A GGUF file loaded in llama.cpp on the CPU, with its own template, tokenizer and stops."""

    def __init__(self, path: Path, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        llama_cpp = require_llama_cpp(f"Loading {path.name}")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = path
        # One sequence, seed 0: the same file gives the same greedy answer every run.
        self.llm: Llama = load_llama(path, n_ctx, n_threads or machine_threads(), seed=0)
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
            raise ModelError(
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
            raise ModelError(
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
