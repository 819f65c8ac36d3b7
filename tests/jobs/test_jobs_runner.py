"""How a job's OpenAI hyperparameters become shoptalk training settings."""

from __future__ import annotations

import torch

from shoptalk.jobs.runner import job_config, scaled_learning_rate
from shoptalk.modeling.load import load_model
from shoptalk.project import Project
from shoptalk.registry.jobs import JobRow
from shoptalk.train.plan import auto_learning_rate

from projects import write_project


def job(hyperparameters: dict) -> JobRow:
    return JobRow(
        id="ftjob-1",
        model="base",
        training_file="file-1",
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        seed=7,
    )


def test_hyperparameters_map_onto_training_settings(tmp_path, tiny_model):
    cfg = Project.open(write_project(tmp_path / "p", tiny_model, max_seq_len=128)).config
    tuned = job_config(
        cfg, job({"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": "auto"})
    )
    assert (tuned.train.method, tuned.train.trainable_layers, tuned.train.seed) == ("lora", None, 7)
    assert tuned.train.epochs == 4.0 and tuned.train.tokens_per_step == 256


def test_the_multiplier_scales_the_automatic_learning_rate(tmp_path, tiny_model):
    cfg = Project.open(write_project(tmp_path / "p", tiny_model, learning_rate="auto")).config
    row = job({"learning_rate_multiplier": 2})
    scaled = scaled_learning_rate(job_config(cfg, row), row, str(tiny_model))
    params = sum(
        p.numel() for p in load_model(str(tiny_model), "cpu", dtype=torch.float32).parameters()
    )
    assert scaled.train.learning_rate == 2 * auto_learning_rate("lora", params)
