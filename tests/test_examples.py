"""The bundled examples: their configs load, their data builds, their questions parse."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shoptalk.data.dataset import build_dataset
from shoptalk.eval.questions import load_suites
from shoptalk.project import Project

EXAMPLES = sorted(
    p.parent for p in (Path(__file__).resolve().parents[1] / "examples").glob("*/shoptalk.yaml")
)


def test_there_is_an_english_and_a_chinese_example():
    assert {p.name for p in EXAMPLES} >= {"kestrel", "chaxiang"}


@pytest.mark.parametrize("root", EXAMPLES, ids=lambda p: p.name)
def test_example_builds_a_dataset_and_its_questions_parse(root, tmp_path):
    project = Project.open(root)
    # The examples' own data: self-replay (on by default) would load the base model to
    # answer the bundled prompts; tests/data/test_replay.py tests that on a tiny model.
    project.config.data.replay.ratio = 0.0
    dataset = build_dataset(project.config, project.root, tmp_path / "datasets")
    kinds = Counter(c.kind for c in dataset.conversations("train"))
    assert kinds["faq"] >= 30 and kinds["paraphrase"] > kinds["faq"] and kinds["doc_qa"] > 20
    assert kinds["refusal"] >= 4
    suites = load_suites([root / f for f in project.config.sources.questions])
    assert {s.kind for s in suites} >= {"domain", "unanswerable"}
    trained = (dataset.path / "train.jsonl").read_text(encoding="utf-8")
    for suite in suites:
        for question in suite.questions:
            if suite.name != "faq_as_written":
                assert f'"content":"{question.prompt_text}"' not in trained, (
                    "a held-out question was trained on"
                )
