"""Training only the top layers: the cached bottom must change nothing but speed."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from shoptalk.pipeline import prepare_dataset
from shoptalk.pipeline import train as run_train
from shoptalk.project import Project

from projects import write_project


def train_tiny(tmp_path, tiny_model, name: str, **settings) -> tuple[Project, list[dict]]:
    project = Project.open(
        write_project(tmp_path / name, tiny_model, method="full", epochs=1, **settings)
    )
    dataset = prepare_dataset(project)
    run = run_train(project, dataset=dataset)
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    return project, [json.loads(line) for line in lines]


def test_cached_bottom_gives_the_same_losses_as_running_it(tmp_path, tiny_model):
    _, cached = train_tiny(tmp_path, tiny_model, "cached", trainable_layers=1)
    _, direct = train_tiny(tmp_path, tiny_model, "direct", trainable_layers=1, cache_gb=0)
    assert len(cached) == len(direct) > 2
    for a, b in zip(cached, direct, strict=False):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)


def test_only_the_top_layers_change(tmp_path, tiny_model):
    project, _ = train_tiny(tmp_path, tiny_model, "top", trainable_layers=1, learning_rate=1e-2)
    before = load_file(tiny_model / "model.safetensors")
    (run,) = project.runs.iterdir()
    after = load_file(run / "final" / "model.safetensors")
    # Final weights are saved in float16 (train/sft.py `as_float16`).
    changed = {name for name in before if not torch.equal(before[name].half(), after[name])}
    assert changed, "the top layer learned something"
    assert all(name.startswith("model.layers.1.") for name in changed), sorted(changed)
