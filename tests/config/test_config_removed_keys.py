"""A key a release removed still loads from an older shoptalk.yaml, and says it does nothing."""

from __future__ import annotations

import logging

import yaml

from shoptalk.config import load_config


def test_min_question_overlap_is_ignored_with_a_warning(tmp_path, caplog):
    config = {"name": "Old", "rag": {"select": {"min_question_overlap": 0.3, "sentences": 2}}}
    (tmp_path / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        cfg = load_config(tmp_path, env={})
    assert cfg.rag.select.sentences == 2
    assert "min_question_overlap" not in cfg.rag.select.model_dump()
    assert "rag.select.min_question_overlap is no longer used" in caplog.text
