"""The serve section refuses, when the file is read, a batch the chosen engine cannot run."""

from __future__ import annotations

import pytest
import yaml

from shoptalk.config import load_config
from shoptalk.config.serve import LLAMACPP_MAX_SEQUENCES
from shoptalk.errors import ConfigError


def write(tmp_path, serve: dict) -> None:
    config = {"name": "Batch", "serve": serve}
    (tmp_path / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def test_a_llamacpp_batch_beyond_its_sequence_slots_is_refused_naming_the_key_and_range(tmp_path):
    write(tmp_path, {"engine": "llamacpp", "max_batch_size": LLAMACPP_MAX_SEQUENCES + 1})
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path, env={})
    message = str(refused.value)
    assert "shoptalk.yaml" in message
    assert f"serve.max_batch_size is {LLAMACPP_MAX_SEQUENCES + 1}" in message
    assert f"between 1 and {LLAMACPP_MAX_SEQUENCES}" in message


@pytest.mark.parametrize(
    ("engine", "size"),
    [("llamacpp", LLAMACPP_MAX_SEQUENCES), ("auto", 1024), ("transformers", 1024)],
)
def test_batches_the_engine_can_run_load(tmp_path, engine, size):
    # 'auto' caps only its GGUF exports (serve.llamacpp.batch_rows): the key also sizes
    # the transformers engine's batches, which have no such limit.
    write(tmp_path, {"engine": engine, "max_batch_size": size})
    assert load_config(tmp_path, env={}).serve.max_batch_size == size
