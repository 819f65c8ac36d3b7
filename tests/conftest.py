"""Shared fixtures: a tiny random chat model built in the test, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are overhead-bound: one thread is faster than two on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
