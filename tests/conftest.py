"""Shared fixtures: a tiny random chat model built in the test, never downloaded;
and, under CI, a check that what `scripts/setup.sh --dev` installs is really there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_model import build_tiny_model

# Set by `.ci/run`. The tests of llama.cpp, the GGUF export and the default model skip
# when those are missing (a machine set up without --dev), so without this a broken
# llama-cpp-python (its import failing) would turn them into skips and CI would pass.
REQUIRE_DEV_ENV = "SHOPTALK_TEST_REQUIRE_DEV"


def missing_dev_extras() -> list[str]:
    """What `scripts/setup.sh --dev` installs that this environment lacks, each with why."""
    from shoptalk.errors import ShoptalkError
    from shoptalk.export.gguf import require_converter
    from shoptalk.modeling.load import default_gguf_path

    missing = []
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # a broken build fails with OSError or ImportError
        missing.append(f"llama-cpp-python does not import ({type(exc).__name__}: {exc})")
    for check in (require_converter, default_gguf_path):
        try:
            check()
        except ShoptalkError as exc:
            missing.append(str(exc))
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get(REQUIRE_DEV_ENV) != "1":
        return
    missing = missing_dev_extras()
    if missing:
        pytest.exit(
            f"{REQUIRE_DEV_ENV}=1 but the test setup is incomplete, so the tests that need "
            "it would be skipped: " + "; ".join(missing) + ". Run `bash scripts/setup.sh --dev`.",
            returncode=4,
        )


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
