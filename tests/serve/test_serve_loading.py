"""A model load never freezes the server: /health answers while the catalog loads.

The loads here are made slow on purpose (a sleep inside the catalog's loaders),
the way a real multi-gigabyte model is slow, so the test sees whether anything
on the event loop waits for them.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import httpx
from serve_harness import serving

from shoptalk.serve.catalog import Catalog, ModelEntry

LOAD_S = 2.0
# A server that waited for the load would answer /health after up to LOAD_S; one that does
# not answers at once. Half of LOAD_S tells them apart with room for a loaded machine (a
# full suite once took 0.7 s here, alone 3 runs out of 3 under 0.1 s).
RESPONSIVE_S = LOAD_S / 2
HELLO = [{"role": "user", "content": "What is the claim window?"}]


class SlowCatalog(Catalog):
    """The tiny model, loaded as slowly as a large one: its tokenizer and its weights."""

    def __init__(self, model_dir: Path, slow_tokenizer: bool, slow_weights: bool) -> None:
        base = ModelEntry("base", "base", model_dir)
        super().__init__({"base": base})
        self.slow_tokenizer, self.slow_weights = slow_tokenizer, slow_weights
        self.loading, self.loaded = threading.Event(), threading.Event()

    def tokenizer(self, entry: ModelEntry):
        with self._lock:
            if self.slow_tokenizer and not self._tokenizers:
                self.slow_load()
            return super().tokenizer(entry)

    def _load_base(self):
        if self.slow_weights and self._base is None:
            self.slow_load()
        return super()._load_base()

    def slow_load(self) -> None:
        self.loading.set()
        time.sleep(LOAD_S)
        self.loaded.set()


def slowest_health_while_loading(catalog: SlowCatalog, state: Path) -> float:
    """The slowest /health answer while a first chat request waits for the load.

    A second chat request arrives during the load: its lookups must not hold up
    the event loop either.
    """
    with serving(state, catalog) as served:

        def ask() -> None:
            served.client().chat.completions.create(
                model="base", messages=HELLO, max_tokens=2, temperature=0
            )

        chats = [threading.Thread(target=ask) for _ in range(2)]
        chats[0].start()
        assert catalog.loading.wait(30)
        chats[1].start()
        # A full garbage collection of a long test session's objects is no model load.
        gc.disable()
        try:
            slowest = _slowest_health(served.url, catalog)
        finally:
            gc.enable()
        for chat in chats:
            chat.join()
    return slowest


def _slowest_health(url: str, catalog: SlowCatalog) -> float:
    slowest = 0.0
    with httpx.Client(base_url=url) as client:
        while not catalog.loaded.is_set():
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            if not catalog.loaded.is_set():
                # Only answers given during the slow part count: the real load that
                # follows it holds the GIL (and may start a garbage collection).
                slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
    return slowest


def test_health_answers_while_the_first_request_loads_the_tokenizer(
    tiny_model: Path, tmp_path: Path, one_thread
):
    catalog = SlowCatalog(tiny_model, slow_tokenizer=True, slow_weights=False)
    assert slowest_health_while_loading(catalog, tmp_path) < RESPONSIVE_S


def test_health_answers_while_the_batch_thread_loads_the_model(
    tiny_model: Path, tmp_path: Path, one_thread
):
    catalog = SlowCatalog(tiny_model, slow_tokenizer=False, slow_weights=True)
    # Warm the tokenizer so the first request reaches the batch thread at once.
    catalog.tokenizer(catalog.resolve("base"))
    assert slowest_health_while_loading(catalog, tmp_path) < RESPONSIVE_S


def test_lookups_do_not_wait_for_a_load(tiny_model: Path):
    catalog = SlowCatalog(tiny_model, slow_tokenizer=False, slow_weights=True)
    entry = catalog.resolve("base")
    loader = threading.Thread(target=catalog.acquire, args=(entry,))
    loader.start()
    assert catalog.loading.wait(30)
    started = time.monotonic()
    assert catalog.resolve("base") == entry
    catalog.tokenizer(entry)
    catalog.context_length(entry)
    took = time.monotonic() - started
    loader.join()
    assert took < LOAD_S / 2
