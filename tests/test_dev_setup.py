"""CI runs every test of the --dev setup: a llama.cpp that is not installed fails the run
instead of turning the llama.cpp tests into skips (tests/conftest.py, `.ci/run`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The variable tests/conftest.py reads (imported by name here: several conftest modules exist).
REQUIRE_DEV_ENV = "SHOPTALK_TEST_REQUIRE_DEV"

ROOT = Path(__file__).resolve().parents[1]


def pytest_run(env: dict, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_under_ci_a_missing_llama_cpp_fails_the_run_instead_of_skipping_its_tests(tmp_path):
    # llama-cpp-python hidden as if it were not installed: `pytest.importorskip` skips.
    shim = tmp_path / "shim" / "llama_cpp"
    shim.mkdir(parents=True)
    hidden = "raise ModuleNotFoundError(\"No module named 'llama_cpp'\", name='llama_cpp')\n"
    (shim / "__init__.py").write_text(hidden)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env.get("PYTHONPATH", "")])
    target = "tests/serve/test_serve_llamacpp.py"

    outside_ci = pytest_run(env | {REQUIRE_DEV_ENV: ""}, "--co", target)
    assert outside_ci.returncode == 5, outside_ci.stdout  # nothing collected: a quiet skip

    under_ci = pytest_run(env | {REQUIRE_DEV_ENV: "1"}, "--co", target)
    out = under_ci.stdout + under_ci.stderr
    assert under_ci.returncode == 4, out
    assert "llama-cpp-python does not import (ModuleNotFoundError: No module named" in out
    assert "scripts/setup.sh --dev" in out


def test_ci_runs_the_tests_with_the_check_on():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/setup.sh --dev" in ci
    assert f"{REQUIRE_DEV_ENV}=1 .venv/bin/python -m pytest" in ci
