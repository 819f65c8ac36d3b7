"""`/v1/embeddings`: the project's embedding model (`shoptalk.modeling.embed`) behind the API.

Like prompts, inputs are never truncated silently: a text longer than the
model's window is a 400 naming the counts.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from shoptalk.modeling.embed import Embedder, InputTooLong, load_embedder
from shoptalk.serve.errors import ApiError

if TYPE_CHECKING:
    import numpy as np


class EmbeddingService:
    """One encode at a time (it uses every core anyway), off the event loop."""

    def __init__(self, name: str = "default", embedder: Embedder | None = None) -> None:
        self.embedder = embedder or load_embedder(name)
        self.name = self.embedder.served_name
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return [self.name, "default"]

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Unit-length vectors and the number of input tokens."""
        return await asyncio.to_thread(self._embed, texts)

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        with self._lock:
            try:
                return self.embedder.encode_whole(texts)
            except InputTooLong as exc:
                raise ApiError(
                    400, str(exc), code="context_length_exceeded", param="input"
                ) from exc
