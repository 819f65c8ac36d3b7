"""Continued pretraining: the document text alone, a loss on every token, selected by the config."""

from __future__ import annotations

import json

import pytest

from shoptalk.errors import ConfigError
from shoptalk.modeling.load import load_tokenizer
from shoptalk.pipeline import prepare_dataset
from shoptalk.pipeline import train as run_train
from shoptalk.project import Project
from shoptalk.train import cpt, sft

from projects import write_project


def test_cpt_trains_on_every_token_of_the_documents_only(tmp_path, tiny_model, one_thread):
    project = Project.open(
        write_project(tmp_path / "p", tiny_model, recipe="cpt", epochs=1, trainable_layers=None)
    )
    dataset = prepare_dataset(project)
    view = cpt.document_view(dataset)
    assert view.conversations("train") == [] and view.conversations("val") == []
    assert [c.text for c in view.texts()] == [c.text for c in dataset.texts()]

    tokenizer = load_tokenizer(str(tiny_model))
    rows = sft.prepare_rows(tokenizer, view, project.config, "train")
    tokens = sum(len(r.input_ids) for r in rows)
    labelled = sum(sum(t != -100 for t in r.labels) for r in rows)
    assert tokens > 0 and labelled == tokens  # no prompt, no mask: every token is a target

    events: list = []
    run = run_train(project, on_event=events.append, dataset=dataset)
    assert [e.stage for e in events if e.status == "started"] == ["cpt"]
    assert [e.message.split()[0] for e in events if e.stage == "input"] == ["document"]
    assert run.final.is_dir() and run.is_adapter
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert lines and all("loss" in r for r in lines)
    card = json.loads((run.path / "card.json").read_text())
    assert card["dataset_hash"] == f"{dataset.hash}-cpt"


def test_cpt_without_document_text_is_a_clear_error(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model, recipe="cpt")
    project = Project.open(root)
    config = project.config.model_copy(
        update={"data": project.config.data.model_copy(update={"document_text": False})}
    )
    dataset = prepare_dataset(Project(project.root, config))
    with pytest.raises(ConfigError, match="document_text"):
        cpt.document_view(dataset)
