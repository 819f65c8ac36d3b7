"""Console feedback flows into the next dataset: good answers and corrections to train on,
corrections against wrong answers as preference pairs; a rating carrying groups is trained
only where `train.groups` holds them all, like a restricted document (issue 18)."""

from __future__ import annotations

import json

from shoptalk.artifacts import read_jsonl
from shoptalk.data.dataset import build_dataset, dataset_hash
from shoptalk.data.feedback import feedback_path
from shoptalk.data.preferences import Feedback
from shoptalk.project import Project
from shoptalk.records import Message, Preference

from projects import write_project


def rate(
    question: str,
    answer: str,
    rating: str,
    correction: str | None = None,
    groups: list[str] | None = (),
) -> Feedback:
    return Feedback(
        id=f"fb-{abs(hash(question)) % 10**6}",
        prompt=[Message(role="user", content=question)],
        answer=answer,
        rating=rating,
        correction=correction,
        groups=list(groups) if groups is not None else None,
    )


def write_feedback(root, items: list[Feedback]) -> None:
    path = feedback_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(i.model_dump_json() + "\n" for i in items), encoding="utf-8")


def trained_answers(dataset) -> set[str]:
    return {
        c.messages[-1].content
        for c in dataset.conversations("train")
        if c.source.startswith("feedback:")
    }


def test_feedback_becomes_training_and_preference_data(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model)
    project = Project.open(root)
    before = dataset_hash(project.config, root)
    items = [
        rate("Where is the Bergen depot?", "It is on Kaigaten 3.", "up"),
        rate("How late is support open?", "Until 22:00.", "down", "Support closes at 17:00."),
        rate("What is the fuel surcharge?", "4%.", "down"),
    ]
    path = feedback_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(i.model_dump_json() + "\n" for i in items), encoding="utf-8")
    assert dataset_hash(project.config, root) != before, "new feedback makes a new dataset"
    dataset = build_dataset(project.config, root, project.datasets)
    answers = {
        c.messages[-1].content
        for c in dataset.conversations("train")
        if c.source.startswith("feedback:")
    }
    assert answers == {"It is on Kaigaten 3.", "Support closes at 17:00."}
    pairs = read_jsonl(dataset.path / "preferences.jsonl", Preference)
    assert [(p.chosen, p.rejected) for p in pairs] == [("Support closes at 17:00.", "Until 22:00.")]


def test_a_rating_with_groups_is_trained_only_where_train_groups_hold_them_all(
    tmp_path, tiny_model
):
    root = write_project(tmp_path / "p", tiny_model)
    write_feedback(
        root,
        [
            rate("Where is the Bergen depot?", "Open to all: Kaigaten 3.", "up"),
            rate("What is the bonus?", "HR says: 4% in March.", "up", groups=["hr"]),
            rate("What do pay and budget say?", "HR+finance: 4%, 2M.", "up", groups=["hr", "fin"]),
            rate("What is the fuel surcharge?", "Old: 4%.", "down", "Never recorded: 5%.", None),
            rate("How late is support open?", "Until 22:00.", "down", "HR: 17:00.", ["hr"]),
        ],
    )
    project = Project.open(root)
    public = build_dataset(project.config, root, project.datasets)
    assert trained_answers(public) == {"Open to all: Kaigaten 3."}
    assert read_jsonl(public.path / "preferences.jsonl", Preference) == []
    manifest = json.loads((public.path / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["withheld_feedback"]) == 4

    hr = Project.open(root).config.model_copy(deep=True)
    hr.train.groups = ["hr"]
    assert dataset_hash(hr, root) != public.hash, "what is withheld is part of the dataset"
    for_hr = build_dataset(hr, root, project.datasets)
    # "hr" alone may not learn a rating that also quotes finance, nor one never labelled.
    assert trained_answers(for_hr) == {
        "Open to all: Kaigaten 3.",
        "HR says: 4% in March.",
        "HR: 17:00.",
    }
    pairs = read_jsonl(for_hr.path / "preferences.jsonl", Preference)
    assert [(p.chosen, p.rejected) for p in pairs] == [("HR: 17:00.", "Until 22:00.")]
    both = hr.model_copy(deep=True)
    both.train.groups = ["hr", "fin"]
    assert "HR+finance: 4%, 2M." in trained_answers(build_dataset(both, root, project.datasets))
