"""The training input is chosen in one place: `build` and `train` train the same run."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from shoptalk import pipeline
from shoptalk.cli import app
from shoptalk.pipeline.inputs import uses_raft
from shoptalk.project import Project

from projects import write_project

runner = CliRunner()


def raft_project(root, tiny_model) -> Project:
    root = write_project(root, tiny_model, epochs=1, checkpoint_every=1)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["rag"] = {"raft": {}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    return Project.open(root)


def test_build_and_train_with_raft_train_the_same_run(tmp_path, tiny_model, one_thread):
    project = raft_project(tmp_path / "p", tiny_model)
    stopped = runner.invoke(app, ["build", str(project.root), "--stop-after", "2"])
    assert stopped.exit_code == 0, stopped.output
    (run_dir,) = project.runs.iterdir()
    assert "-raft-" not in run_dir.name and (run_dir / "checkpoints").is_dir()

    trained = runner.invoke(app, ["train", str(project.root)])
    assert trained.exit_code == 0, trained.output
    assert [p.name for p in project.runs.iterdir()] == [run_dir.name], "one run, not two"
    log = (project.state / "logs" / "shoptalk.log").read_text()
    assert "resumed from step-0000002" in log, "train continued the build's run"
    data = pipeline.prepare_input(project)
    assert data.kind == "raft" and run_dir.name == project.run_id(data.hash)


def test_no_resume_restarts_the_run_build_trains(tmp_path, tiny_model, one_thread):
    project = raft_project(tmp_path / "p", tiny_model)
    pipeline.build(project, stop_after=2)
    (run_dir,) = project.runs.iterdir()
    events: list[pipeline.Event] = []
    pipeline.train(project, on_event=events.append, resume=False, stop_after=1)
    steps = [e.step for e in events if e.stage == "sft" and e.step is not None]
    assert steps == [1], "started over: its checkpoints were deleted"
    assert [p.name for p in project.runs.iterdir()] == [run_dir.name]


def test_the_plan_follows_the_recipe(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["train"] = {
        k: v for k, v in config["train"].items() if k not in ("epochs", "learning_rate")
    } | {"recipe": "dpo", "dpo": {"epochs": 2, "learning_rate": 1e-3}}
    config["sources"]["preferences"] = ["prefs.jsonl"]
    (root / "prefs.jsonl").write_text(
        '{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}\n'
        '{"prompt": "Who?", "chosen": "Kestrel.", "rejected": "?"}\n'
    )
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    plan = pipeline.plan(Project.open(root))
    (stage,) = plan.stages
    assert (plan.recipe, stage.stage, stage.epochs, stage.learning_rate) == ("dpo", "dpo", 2, 1e-3)
    assert plan.total_steps == stage.total_steps > 0 and "dpo" in plan.render()


def test_raft_is_on_by_default_where_there_are_documents_to_read(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config.pop("rag", None)
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    assert uses_raft(Project.open(root)), "default settings train the reader"

    for change in ({"rag": {"raft": None}}, {"sources": {**config["sources"], "docs": []}}):
        (root / "shoptalk.yaml").write_text(yaml.safe_dump(config | change))
        assert not uses_raft(Project.open(root)), change
    cpt = config | {"train": {"recipe": "cpt"}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(cpt))
    assert not uses_raft(Project.open(root)), "continued pretraining reads document text alone"
