"""GGUF files in llama.cpp (llama-cpp-python): the one runtime for every stage that runs one.

`load_llama` loads a GGUF on the CPU for one sequence (`GgufChat`);
`BatchContext` is one context decoding many sequences at once (the serving
engine's). `GgufChat` is a GGUF with what the file carries: its chat
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

from shoptalk import progress
from shoptalk.errors import MissingExtraError, ModelError
from shoptalk.modeling.copy_numbers import NumberGuard, NumberPieces, pieces_from

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

INSTALL_HINT = (
    "run `bash scripts/setup.sh --llamacpp` (the first run compiles llama.cpp: 10-20 minutes; "
    "later runs reuse the wheel it keeps in ~/.cache/shoptalk/wheels)"
)
# How many of the best tokens at each step an answer records (the parity check's near ties).
CLOSE = 5
# Bytes of one K or V value in llama.cpp's default cache type (f16), which BatchContext keeps.
KV_VALUE_BYTES = 2


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

    tuned = True  # an export of a build's run (shoptalk export)

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
        self._pieces: NumberPieces | None = None
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

    def greedy(
        self, prompt: list[int], max_new_tokens: int, guard: NumberGuard | None = None
    ) -> Greedy:
        """Argmax token by token until a stop token or `max_new_tokens`; with a `guard`,
        among the tokens it allows (`copy_numbers`)."""
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
            if guard is not None:
                logits = guard.apply(logits, self.decode(tokens))
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

    def answer(
        self, messages: list[dict[str, str]], max_new_tokens: int, sources: list[str] | None = None
    ) -> str:
        """The greedy reply to `messages`, as text: what a llama.cpp user of the file gets.
        With `sources`, it writes no number they do not hold (`copy_numbers`)."""
        prompt = self.encode(self.render(messages))
        guard = None if sources is None else NumberGuard(self.number_pieces(), sources)
        return self.decode(self.greedy(prompt, max_new_tokens, guard).tokens).strip()

    def number_pieces(self) -> NumberPieces:
        """The file's own tokens that write numbers (read once)."""
        if self._pieces is None:
            self._pieces = pieces_from(
                (i, self.llm.detokenize([i]).decode("utf-8", errors="replace"))
                for i in range(self.llm.n_vocab())
            )
        return self._pieces

    def close(self) -> None:
        self.llm.close()

    def __enter__(self) -> GgufChat:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def answer_gguf(
    chat: GgufChat,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int = 64,
    phase: str | None = None,
    sources: list[list[str] | None] | None = None,
) -> list[str]:
    """Greedy answers in llama.cpp, one conversation at a time; same order as the input.

    The GGUF side of `modeling.generate.answer` (which hands a `GgufChat` here):
    one sequence at a time, as the export's parity check answers, so each answer
    is exactly what `GgufChat.greedy` gives for its prompt.
    """
    sources = sources or [None] * len(conversations)
    return [
        chat.answer(messages, max_new_tokens, passages)
        for messages, passages in progress.track(
            list(zip(conversations, sources, strict=True)), phase, len(conversations)
        )
    ]


def kv_cell_bytes(path: Path) -> int:
    """Bytes of llama.cpp's KV cache for one cell (one token of one sequence) of the GGUF `path`.

    Read from the file's metadata (the `gguf` package, no llama.cpp): every
    layer's KV heads times its key and value head sizes, at f16 (2 bytes), the
    cache type llama.cpp uses unless told otherwise, as `BatchContext` leaves it.
    A count given per layer (an array: hybrid and sliding-window models) is
    summed layer by layer; this is an upper bound for a model whose sliding
    layers keep fewer cells.
    """
    from gguf import GGUFReader

    fields = GGUFReader(path).fields

    def value(key: str, default: Any = None) -> Any:
        field = fields.get(key)
        return default if field is None else field.contents()

    arch = value("general.architecture")
    layers = value(f"{arch}.block_count")
    heads = value(f"{arch}.attention.head_count")
    embedding = value(f"{arch}.embedding_length")
    if None in (layers, heads, embedding):
        raise ModelError(f"{path.name} does not give its layers, heads and width ({arch}.*).")

    def per_layer(count: int | list[int]) -> list[int]:
        return list(count) if isinstance(count, list) else [count] * layers

    kv_heads = value(f"{arch}.attention.head_count_kv", heads)
    total = 0
    for head_count, kv_count in zip(per_layer(heads), per_layer(kv_heads), strict=True):
        if not kv_count:
            continue  # a layer without attention (a recurrent one) keeps no KV cells
        key = value(f"{arch}.attention.key_length", embedding // head_count)
        val = value(f"{arch}.attention.value_length", embedding // head_count)
        total += kv_count * (key + val) * KV_VALUE_BYTES
    return total


class BatchContext:
    """A GGUF in one llama.cpp context that decodes many sequences in one `llama_decode` call.

    The serving engine's continuous batching runs on this. Each of the `n_seq`
    sequences has its own id, positions and KV stream of `seq_tokens` cells
    (`kv_unified` off): with one cache shared by all sequences, a sequence's
    cells sit wherever room was, and the attention sums then run in another
    order than when it runs alone, enough to flip near-tie greedy tokens of
    the default model (measured: 6 of 8 answers of 48 tokens differed). With a
    stream each, a sequence's answer does not depend on who shares the batch.
    Used by one thread only: a llama.cpp context is not thread-safe.
    """

    def __init__(self, path: Path, seq_tokens: int, n_seq: int, n_threads: int) -> None:
        llama_cpp = require_llama_cpp(f"Loading {path.name}")
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        self._api = llama_cpp
        set_verbose(False)  # as the Llama class does: llama.cpp logs every context it makes
        llama_cpp.llama_backend_init()  # idempotent; the Llama class calls it once
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        self._model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
        limit = llama_cpp.llama_max_parallel_sequences()
        if n_seq > limit:  # a caller that fed more would run out of sequence ids mid-batch
            raise ModelError(
                f"llama.cpp decodes at most {limit} sequences in one context; {n_seq} were asked."
            )
        self.n_seq = n_seq
        # A step holds one token per decoding sequence plus prompt chunks of new ones.
        self.n_batch = max(512, self.n_seq)
        context = llama_cpp.llama_context_default_params()
        context.n_ctx = seq_tokens * self.n_seq
        context.n_batch = context.n_ubatch = self.n_batch
        context.n_seq_max = self.n_seq
        context.kv_unified = False
        context.n_threads = context.n_threads_batch = n_threads
        # As `load_llama` (the export's parity check): the same attention kernels, the same argmax.
        context.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._context = _internals.LlamaContext(model=self._model, params=context, verbose=False)
        self.ctx = self._context.ctx
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._model.vocab)
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        if (
            llama_cpp.llama_n_ctx_seq(self.ctx) < seq_tokens
        ):  # the engine's length check relies on it
            self.close()
            raise ModelError(
                f"llama.cpp gave {path.name} fewer than {seq_tokens} cells a sequence."
            )

    def decode(self, inputs: list[tuple[int, list[int], int, bool]]) -> list[np.ndarray | None]:
        """Feed `(sequence id, tokens, position of the first, logits wanted)` in one call.

        Returns, per input, the logits after its last token (a view valid until the
        next call) or None when not wanted.
        """
        import numpy as np

        api, batch = self._api, self._batch
        n = 0
        wanted: list[int | None] = []
        for seq, tokens, pos, want in inputs:
            for k, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos + k
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = want and k == len(tokens) - 1
                n += 1
            wanted.append(n - 1 if want else None)
        batch.n_tokens = n
        status = api.llama_decode(self.ctx, batch)
        if status != 0:
            # 1: no KV cell left in a sequence's stream; < 0: llama.cpp's own error.
            raise ModelError(f"llama.cpp could not decode a batch of {n} tokens (status {status}).")
        return [
            None
            if i is None
            else np.ctypeslib.as_array(api.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
            for i in wanted
        ]

    def free(self, seq: int) -> None:
        """Drop sequence `seq`'s cells; its id may start a new sequence at position 0."""
        self._api.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def clear(self) -> None:
        self._api.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        if self._batch is not None:
            self._api.llama_batch_free(self._batch)
            self._batch = None
        self._context.close()
        self._model.close()
