"""Training respects groups (issue 18): the dataset holds what `train.groups` may read.

By default (`train.groups: []`) a document restricted to a group is left out,
so the model every key may query cannot tell its facts; with `train.groups:
[hr]` it is trained on. A project without restricted documents keeps its
dataset hash and run id.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from shoptalk.data.dataset import build_dataset, dataset_hash
from shoptalk.project import Project

from projects import write_project

SECRET = "Every employee gets a new laptop every 42 months."
RESTRICTED = f"---\ngroups: [hr]\n---\n# Laptop policy\n\n{SECRET}\n"


def with_train(root: Path, **train: object) -> Project:
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["train"] |= train
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return Project.open(root)


def dataset_text(project: Project) -> tuple[str, dict]:
    built = build_dataset(project.config, project.root, project.datasets)
    text = "".join(
        (built.path / name).read_text(encoding="utf-8")
        for name in ("train.jsonl", "val.jsonl", "text.jsonl")
    )
    return text, json.loads((built.path / "manifest.json").read_text(encoding="utf-8"))


def restricted_project(tmp_path: Path, base_model: Path) -> Path:
    root = write_project(tmp_path / "p", base_model)
    (root / "docs" / "laptops.md").write_text(RESTRICTED, encoding="utf-8")
    return root


def test_by_default_a_restricted_document_is_not_trained_on(tmp_path, tiny_model):
    project = Project.open(restricted_project(tmp_path, tiny_model))
    text, manifest = dataset_text(project)
    assert "42 months" not in text
    assert "Forklift drivers" in text  # the public handbook still is
    assert manifest["groups"] == [] and manifest["withheld"] == ["docs/laptops.md"]


def test_with_train_groups_hr_it_is_and_the_hash_says_so(tmp_path, tiny_model):
    root = restricted_project(tmp_path, tiny_model)
    public = Project.open(root)
    hr = with_train(root, groups=["hr"])
    text, manifest = dataset_text(hr)
    assert "42 months" in text
    assert manifest["groups"] == ["hr"] and manifest["withheld"] == []
    assert dataset_hash(hr.config, root) != dataset_hash(public.config, root)
    assert hr.run_id("0" * 16) != public.run_id("0" * 16)


def test_a_project_without_restricted_documents_keeps_its_hash(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model)
    public = Project.open(root)
    before = dataset_hash(public.config, root), public.run_id("0" * 16)
    (root / "docs" / "laptops.md").write_text(RESTRICTED, encoding="utf-8")
    # Restricting a document changes the dataset (it is left out) ...
    assert dataset_hash(public.config, root) != before[0]
    (root / "docs" / "laptops.md").unlink()
    # ... and a group setting that leaves nothing out changes neither dataset nor the default run id.
    assert dataset_hash(with_train(root, groups=["hr"]).config, root) == before[0]
    assert public.run_id("0" * 16) == before[1]


def test_a_document_whose_groups_cannot_be_told_is_skipped_never_trained_on(tmp_path, tiny_model):
    root = write_project(tmp_path / "p", tiny_model)
    (root / "docs" / "broken.md").write_text(
        f"---\ngroups: []\n---\n# Broken\n\n{SECRET}\n", encoding="utf-8"
    )
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["data"]["on_error"] = "skip"
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    text, manifest = dataset_text(Project.open(root))
    assert "42 months" not in text
    assert any("docs/broken.md" in skipped for skipped in manifest["skipped"])
