"""End to end on the real default model (SmolLM2-135M-Instruct), briefly. Minutes, not hours."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from shoptalk.cli import app
from shoptalk.modeling.load import default_gguf_path, resolve_base_model

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kestrel"
runner = CliRunner()


@pytest.fixture(scope="module")
def default_model() -> str:
    try:
        default_gguf_path()
    except Exception as exc:  # the wheel is installed by scripts/setup.sh
        pytest.skip(str(exc))
    return resolve_base_model("default")


def test_default_model_is_converted_once_and_knows_paris(default_model):
    folder = Path(default_model)
    stamp = (folder / "config.json").stat().st_mtime_ns
    started = time.perf_counter()
    assert resolve_base_model("default") == default_model
    assert time.perf_counter() - started < 2, "the second resolve must reuse the cached folder"
    assert (folder / "config.json").stat().st_mtime_ns == stamp

    from shoptalk.modeling.generate import answer, load_assistant

    assistant = load_assistant(default_model, None, "cpu")
    (reply,) = answer(
        assistant, [[{"role": "user", "content": "What is the capital of France?"}]], 12
    )
    assert "Paris" in reply


def small_kestrel(root: Path) -> Path:
    """The example with a fifth of its FAQ, one document and a few questions."""
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".shoptalk"))
    lines = (root / "faq.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (root / "faq.csv").write_text("".join(lines[:16]), encoding="utf-8")
    for doc in sorted((root / "docs").iterdir())[1:]:
        doc.unlink()
    for name in ("faq_as_written", "unanswerable"):
        path = root / "questions" / f"{name}.jsonl"
        path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:4]))
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["sources"]["questions"] = [
        "questions/faq_as_written.jsonl",
        "questions/unanswerable.jsonl",
    ]
    config["sources"]["conversations"] = []
    config["data"] = {"question_variants": 1}
    config["train"] = {"method": "full", "trainable_layers": 4, "epochs": 3, "learning_rate": 3e-4}
    # Four questions cannot show a significant gain: the default domain-gain rule would
    # refuse to promote, which tests/eval/test_gate_defaults.py covers.
    config["eval"] = {
        "max_new_tokens": 24,
        "batch_size": 8,
        "retention": False,
        "gate": {"defaults": {"domain_gain": False}},
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


def test_build_on_the_default_model_end_to_end(tmp_path, default_model):
    project = small_kestrel(tmp_path / "kestrel")
    result = runner.invoke(app, ["build", str(project)])
    assert result.exit_code == 0, result.output
    (run,) = (project / ".shoptalk" / "runs").iterdir()
    card = json.loads((project / ".shoptalk" / "evals" / run.name / "scorecard.json").read_text())
    assert card["suites"]["faq_as_written"]["n"] == 4
    assert card["suites"]["unanswerable"]["n"] == 4
    answers = json.loads((project / ".shoptalk" / "evals" / run.name / "answers.json").read_text())
    assert all(a.strip() for a in answers["faq_as_written"]["tuned"]), (
        "the tuned model answers in words"
    )
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = [m["loss"] for m in metrics if m["epoch"] <= 1]
    last = [m["loss"] for m in metrics if m["epoch"] > 2]
    assert sum(last) / len(last) < sum(first) / len(first), (
        "a third pass over the data has lower loss"
    )
