"""A model trained with `train.groups: [hr]` is served only to keys holding `hr` (issue 18).

Its card names the groups whose documents it learnt; the catalog reads them
and every path that asks a model (list, get, chat, completions, the
playground through `serve.calls`) refuses a key without them.
"""

from __future__ import annotations

import json

import openai
import pytest
from serve_harness import serving

from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.catalog import Catalog, ModelEntry

QUESTION = [{"role": "user", "content": "How often do we get new laptops?"}]


@pytest.fixture
def served(tmp_path, tiny_model):
    run_dir = tmp_path / "runs" / "run-hr"
    run_dir.mkdir(parents=True)
    (run_dir / "card.json").write_text(json.dumps({"groups": ["hr"]}), encoding="utf-8")
    base = ModelEntry("base", "base", tiny_model)
    hr_model = ModelEntry("run-hr", "full", tiny_model, run_dir)
    catalog = Catalog({"base": base, "run-hr": hr_model})
    with serving(tmp_path / "state", catalog) as served:
        keys = served.app.state.services.keys
        served.keys["hr"] = keys.create("hr", KeyLimits(scopes=["chat"], groups=["hr"])).secret
        served.keys["sales"] = keys.create(
            "sales", KeyLimits(scopes=["chat"], groups=["sales"])
        ).secret
        yield served


def test_a_key_without_the_group_is_neither_shown_nor_served_the_model(served):
    for name in ("alice", "sales"):
        client = served.client(name)
        assert "run-hr" not in [m.id for m in client.models.list()]
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="run-hr", messages=QUESTION, max_tokens=2)
        assert refused.value.body["code"] == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):
            client.completions.create(model="run-hr", prompt="laptops", max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("run-hr")
        # The base model, trained on nothing restricted, is still theirs.
        assert client.chat.completions.create(model="base", messages=QUESTION, max_tokens=2)


def test_a_key_with_the_group_and_an_admin_are(served):
    for name in ("hr", "admin"):
        client = served.client(name)
        assert "run-hr" in [m.id for m in client.models.list()]
        answer = client.chat.completions.create(model="run-hr", messages=QUESTION, max_tokens=2)
        assert answer.model == "run-hr"
