"""`rag.raft` in shoptalk.yaml: the build trains on questions paired with selected passages."""

from __future__ import annotations

import re

import yaml

from shoptalk.pipeline import index_documents, prepare_dataset, train, training_input
from shoptalk.project import Project

from projects import write_project


def test_build_trains_on_a_raft_view_of_the_dataset(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, epochs=1)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["rag"] = {"raft": {}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    project = Project.open(root)
    events: list = []
    dataset = prepare_dataset(project, events.append)

    index_documents(project, events.append)
    data = training_input(project, dataset, events.append)
    view = data.dataset
    assert data.kind == "raft" and data.hash == view.hash
    added = [
        c
        for c in view.conversations("train")
        if c.messages[-2].content.startswith("Passages:\n[1] ")
    ]
    assert added, "examples with the selected passages were added"
    assert all(re.search(r"\[\d\]", c.messages[-1].content) for c in added), "each cites"
    assert len(view.conversations("train")) == len(dataset.conversations("train")) + len(added)
    assert view.hash.startswith(dataset.hash + "-raft-")
    again = training_input(project, dataset, events.append)
    assert again.dataset.path == view.path, "built once, then reused"
    run = train(project, events.append, stop_after=1)
    assert run.run_id == project.run_id(view.hash)
