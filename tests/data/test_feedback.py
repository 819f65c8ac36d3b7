"""Console feedback flows into the next dataset: good answers and corrections to train on,
corrections against wrong answers as preference pairs."""

from __future__ import annotations

from shoptalk.artifacts import read_jsonl
from shoptalk.data.dataset import build_dataset, dataset_hash
from shoptalk.data.feedback import feedback_path
from shoptalk.data.preferences import Feedback
from shoptalk.project import Project
from shoptalk.records import Message, Preference

from projects import write_project


def rate(question: str, answer: str, rating: str, correction: str | None = None) -> Feedback:
    return Feedback(
        id=f"fb-{abs(hash(question)) % 10**6}",
        prompt=[Message(role="user", content=question)],
        answer=answer,
        rating=rating,
        correction=correction,
    )


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
