"""How a job's OpenAI hyperparameters become shoptalk training settings."""

from __future__ import annotations

from shoptalk.pipeline import prepare_dataset
from shoptalk.pipeline.jobs import FineTuneJob, job_config
from shoptalk.project import Project
from shoptalk.train import sft
from shoptalk.train.plan import auto_learning_rate

from projects import write_project


def job(hyperparameters: dict, kind: str = "supervised") -> FineTuneJob:
    return FineTuneJob.of({"type": kind, kind: {"hyperparameters": hyperparameters}}, seed=7)


def test_hyperparameters_map_onto_training_settings(tmp_path, tiny_model):
    cfg = Project.open(write_project(tmp_path / "p", tiny_model, max_seq_len=128)).config
    tuned = job_config(
        cfg, job({"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": "auto"})
    )
    assert (tuned.train.method, tuned.train.trainable_layers, tuned.train.seed) == ("lora", None, 7)
    assert tuned.train.epochs == 4.0 and tuned.train.tokens_per_step == 256
    dpo = job_config(cfg, job({"beta": 0.3, "n_epochs": 2}, "dpo"))
    assert (dpo.train.dpo.beta, dpo.train.dpo.epochs) == (0.3, 2.0)
    assert dpo.train.dpo.learning_rate == cfg.train.dpo.learning_rate, "scaled by the recipe"


def test_the_multiplier_scales_the_learning_rate_the_plan_resolves(tmp_path, tiny_model):
    project = Project.open(write_project(tmp_path / "p", tiny_model, learning_rate="auto"))
    spec = job({"learning_rate_multiplier": 2})
    cfg = job_config(project.config, spec)
    dataset = prepare_dataset(project)
    plain = sft.plan_run(cfg, dataset, str(tiny_model))
    scaled = sft.plan_run(cfg, dataset, str(tiny_model), lr_scale=spec.hyperparameters.lr_scale)
    # One parameter count for "auto": the model as it trains, adapters attached.
    assert plain.learning_rate == auto_learning_rate("lora", plain.total_params)
    assert scaled.learning_rate == 2 * plain.learning_rate
    assert "learning_rate" in scaled.auto
