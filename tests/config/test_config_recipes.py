"""Settings per recipe: a key the chosen recipe does not read, or a launch it cannot do, is an error."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from shoptalk.config import ShoptalkConfig, TrainSettings, load_config
from shoptalk.config.train import keys_of
from shoptalk.errors import ConfigError

SFT_LOOP_ONLY = [
    "cache_gb",
    "epochs",
    "learning_rate",
    "gradient_checkpointing",
    "eval_every",
    "early_stopping_patience",
    "early_stopping_min_delta",
    "trackers",
    "sharding",
]


def write(tmp_path, train: dict, sources: dict | None = None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = {"train": train, "sources": sources or {}}
    (tmp_path / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path


def test_each_recipe_reads_its_own_keys():
    every = list(TrainSettings.model_fields)
    assert keys_of("sft") == every
    assert keys_of("cpt") == [k for k in every if k != "dpo"]
    assert keys_of("dpo") == [k for k in every if k not in SFT_LOOP_ONLY]


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("epochs", 3.0, "set train.dpo.epochs instead"),
        ("learning_rate", 1e-4, "set train.dpo.learning_rate instead"),
        ("trackers", ["tensorboard"], "remove it"),
        ("early_stopping_patience", 2, "remove it"),
        ("sharding", "fsdp", "remove it"),
    ],
)
def test_a_key_dpo_does_not_read_is_an_error_naming_key_and_recipe(key, value, fix):
    with pytest.raises(ValidationError) as caught:
        TrainSettings(recipe="dpo", **{key: value})
    message = str(caught.value)
    assert f"train.{key} is set ({value!r})" in message
    assert "train.recipe 'dpo' does not use it" in message and fix in message


def test_cpt_refuses_dpo_settings_it_would_never_run():
    with pytest.raises(ValidationError, match=r"train\.dpo is set .* train\.recipe 'cpt'"):
        TrainSettings(recipe="cpt", dpo={"beta": 0.3})


def test_keys_at_their_default_or_read_by_the_recipe_are_fine():
    TrainSettings(recipe="dpo", epochs="auto", dpo={"epochs": 2}, seed=3, max_seq_len=64)
    TrainSettings(recipe="cpt", epochs=2, trackers=["mlflow"], early_stopping_patience=2)
    TrainSettings(recipe="sft", epochs=2, dpo={"beta": 0.3}, sharding="fsdp")


def test_load_config_names_the_file_and_every_unused_key(tmp_path):
    root = write(tmp_path, {"recipe": "dpo", "epochs": 3, "eval_every": 5})
    with pytest.raises(ConfigError) as caught:
        load_config(root, env={})
    message = str(caught.value)
    assert message.startswith(f"{root / 'shoptalk.yaml'}: key 'train': train.epochs is set")
    assert "train.epochs is set (3.0)" in message and "train.eval_every is set (5)" in message
    assert "{'recipe'" not in message, "the message names keys, it does not dump the section"


def test_a_dpo_launch_on_two_processes_is_refused_at_load(tmp_path):
    root = write(tmp_path, {"recipe": "dpo"})
    assert load_config(root, env={"WORLD_SIZE": "1"}).train.recipe == "dpo"
    with pytest.raises(ConfigError, match=r"DPO runs in one process.*WORLD_SIZE=2"):
        load_config(root, env={"WORLD_SIZE": "2"})


def test_sft_ending_with_dpo_is_refused_on_two_processes_and_sft_alone_is_not(tmp_path):
    with_pairs = write(tmp_path / "a", {"recipe": "sft"}, {"preferences": ["prefs.jsonl"]})
    with pytest.raises(ConfigError, match=r"sources\.preferences ends with a DPO stage"):
        load_config(with_pairs, env={"WORLD_SIZE": "2"})
    plain = write(tmp_path / "b", {"recipe": "sft"})
    assert load_config(plain, env={"WORLD_SIZE": "2"}).train.recipe == "sft"


def test_the_default_config_is_valid_for_every_recipe():
    for recipe in ("sft", "cpt", "dpo"):
        assert ShoptalkConfig(train={"recipe": recipe}).train.recipe == recipe
