"""Self-replay: the bundled general prompts, answered once by the base model, mixed into training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from tiny_model import teach

from shoptalk import progress
from shoptalk.config import ReplaySettings
from shoptalk.data import replay
from shoptalk.data.dataset import build_dataset
from shoptalk.eval.retention import PROMPTS_FILE, QA_FILE
from shoptalk.project import Project

from projects import write_project

BUNDLED = replay.BUILTIN_FILES["general"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def normalized(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def grams(text: str) -> set[str]:
    text = normalized(text)
    n = 2 if re.search(r"[\u4e00-\u9fff]", text) else 3
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


# --- the bundled prompts --------------------------------------------------------------


def test_the_bundled_prompts_are_general_bilingual_and_unique():
    prompts = rows(BUNDLED)
    assert 150 <= len(prompts) <= 300
    langs = [p["lang"] for p in prompts]
    assert langs.count("en") >= 0.4 * len(prompts) and langs.count("zh") >= 0.4 * len(prompts)
    assert len({normalized(p["prompt"]) for p in prompts}) == len(prompts)


def test_no_bundled_prompt_is_a_prompt_of_the_retention_or_general_qa_suites():
    """Replay must not train on what retention and general QA measure, not even reworded."""
    ours = [p["prompt"] for p in rows(BUNDLED)]
    theirs = [r["prompt"] for r in rows(PROMPTS_FILE)] + [r["question"] for r in rows(QA_FILE)]
    assert not {normalized(p) for p in ours} & {normalized(t) for t in theirs}
    near = [
        (o, t)
        for o in ours
        for t in theirs
        if len(grams(o) & grams(t)) / len(grams(o) | grams(t)) >= 0.7
    ]
    assert not near, near


def test_a_cut_reply_keeps_its_full_sentences():
    assert replay.last_full_sentence("One. Two three! Four fi") == "One. Two three!"
    assert replay.last_full_sentence("第一句。第二句还没") == "第一句。"
    assert replay.last_full_sentence("no end at all") == ""
    assert replay.last_full_sentence("Version 2.5 is out") == ""


def test_a_looping_reply_is_degenerate():
    assert replay.degenerate("你可以献上一窝吧－－－－－－－－－－")
    assert replay.degenerate("A fleeting sight, " * 8)
    assert not replay.degenerate("A glacier is a slow river of ice. It forms where snow builds up.")


def test_an_unknown_builtin_source_is_a_config_error():
    with pytest.raises(ValueError, match="unknown built-in replay source"):
        ReplaySettings(files=["builtin:wiki"], ratio=0.2)


# --- the built-in source in the dataset stage ----------------------------------------------


REPLY = "Sure, happy to help."
SYSTEM = "You are Kestrel Assist."


@pytest.fixture(scope="module")
def talking_model(tmp_path_factory, tiny_model, one_thread) -> Path:
    """The tiny model taught to answer any prompt with REPLY (a random one never ends a reply)."""
    pairs = [(r["prompt"], REPLY) for r in rows(BUNDLED)[::15]]
    return teach(
        tiny_model, tmp_path_factory.mktemp("talking-model"), pairs, SYSTEM, steps=300, until=0.02
    )


@pytest.fixture
def project(tmp_path, talking_model, monkeypatch, one_thread) -> Project:
    """A project on the tiny model with self-replay on, over 12 of the bundled prompts."""
    monkeypatch.setenv("SHOPTALK_CACHE", str(tmp_path / "cache"))
    few = tmp_path / "prompts.jsonl"
    few.write_text("".join(line + "\n" for line in BUNDLED.read_text().splitlines()[::20]))
    monkeypatch.setitem(replay.BUILTIN_FILES, "general", few)
    root = write_project(tmp_path / "p", talking_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["system_prompt"] = SYSTEM
    config.setdefault("data", {})["replay"] = {"files": ["builtin:general"], "ratio": 0.2}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.open(root)


def replayed(dataset) -> list:
    return [c for c in dataset.conversations("train") if c.source.startswith("builtin:general:")]


def test_the_builtin_source_adds_the_base_models_own_answers(project, capsys, monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    dataset = build_dataset(project.config, project.root, project.datasets)
    used = replayed(dataset)
    assert used and {c.kind for c in used} == {"chat"}
    manifest = json.loads((dataset.path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["replay"]["files"] == ["builtin:general"]
    assert manifest["counts"]["replay"] == len(used)
    # The answers are the base model's, cached under its identity.
    (cache,) = (Path(project.root.parent / "cache") / "replay").glob("*.json")
    answers = json.loads(cache.read_text(encoding="utf-8"))["answers"]
    words = lambda text: " ".join(text.split())  # noqa: E731  (cleaning folds whitespace)
    for record in used:
        prompt, reply = (m.content for m in record.messages)
        assert words(reply) == words(answers[prompt])
    assert "data: replay answers of the base model (builtin:general)" in capsys.readouterr().err


def test_the_answers_are_generated_once_per_base_model(project, monkeypatch, tmp_path):
    first = build_dataset(project.config, project.root, project.datasets)
    monkeypatch.setattr(replay, "generate_self_answers", lambda *a, **k: pytest.fail("regenerated"))
    # A new dataset folder (another out_root) rebuilds the dataset but not the answers.
    again = build_dataset(project.config, project.root, tmp_path / "elsewhere")
    assert [c.id for c in replayed(again)] == [c.id for c in replayed(first)]


def test_only_the_prompts_a_build_needs_are_answered_and_more_are_added_later(
    project, monkeypatch, tmp_path
):
    asked: list[list[str]] = []
    generate = replay.generate_self_answers
    monkeypatch.setattr(
        replay,
        "generate_self_answers",
        lambda prompts, *a: asked.append(prompts) or generate(prompts, *a),
    )
    build_dataset(project.config, project.root, project.datasets)
    settings = project.config.data.replay.model_copy(update={"ratio": 0.5})
    cfg = project.config.model_copy(
        update={"data": project.config.data.model_copy(update={"replay": settings})}
    )
    build_dataset(cfg, project.root, tmp_path / "more")
    first, second = asked
    assert len(first) < 12, "a sample sized for the ratio, not every prompt"
    assert second and not set(first) & set(second), "only the prompts not answered yet"


def test_the_dataset_hash_follows_the_base_model_and_the_builtin_prompts(project, tmp_path):
    from shoptalk.data.dataset import dataset_hash

    cfg = project.config
    before = dataset_hash(cfg, project.root)
    other_model = cfg.model_copy(update={"base_model": str(tmp_path / "other")})
    assert dataset_hash(other_model, project.root) != before
    off = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"replay": ReplaySettings(ratio=0)})}
    )
    assert dataset_hash(off, project.root) != before
    prompts = replay.BUILTIN_FILES["general"]
    prompts.write_text(prompts.read_text() + json.dumps({"prompt": "Hi?"}) + "\n")
    assert dataset_hash(cfg, project.root) != before
