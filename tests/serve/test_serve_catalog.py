"""Model names: the base, trained runs and aliases; adapters pinned by hash and checked against the base."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from serve_harness import serving
from tiny_model import build_tiny_model

from shoptalk.artifacts import PromotedMode
from shoptalk.config import ServeSettings
from shoptalk.project import Project
from shoptalk.serve.catalog import Catalog

from projects import write_project

HELLO = [{"role": "user", "content": "What is the claim window?"}]


def add_run(project_dir: Path, run_id: str, base: Path, seed: int) -> Path:
    """A LoRA run whose adapter is random (not zero), so it visibly changes answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    run_dir = project_dir / ".shoptalk" / "runs" / run_id
    get_peft_model(model, lora).save_pretrained(run_dir / "final")
    (run_dir / "card.json").write_text(json.dumps({"base_path": str(base)}), encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def project(tiny_model: Path, tmp_path_factory) -> Project:
    root = write_project(tmp_path_factory.mktemp("kestrel"), tiny_model)
    add_run(root, "run-aaaa", tiny_model, seed=1)
    add_run(root, "run-bbbb", tiny_model, seed=2)
    other = build_tiny_model(tmp_path_factory.mktemp("other-base"), hidden=32)
    add_run(root, "run-foreign", other, seed=3)
    (root / ".shoptalk" / "promoted-run").write_text("run-aaaa\n", encoding="utf-8")
    return Project.open(root)


def catalog(project: Project, **settings) -> Catalog:
    return Catalog.for_project(project, ServeSettings(**settings), "cpu")


def test_promoted_run_has_aliases_and_others_need_models_all(project: Project, tiny_model: Path):
    served = {"base", tiny_model.name, "kestrel", "run-aaaa", "shoptalk"}
    assert set(catalog(project).names()) == served
    every = catalog(project, models="all")
    assert set(every.names()) == served | {"run-bbbb", "run-foreign"}
    assert every.resolve(tiny_model.name) == every.resolve("base")
    assert every.resolve("kestrel") == every.resolve("run-aaaa")


def answer(client, model: str) -> str:
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0)
    return reply.choices[0].message.content


def test_adapters_switch_per_request_on_one_base(project: Project, tmp_path: Path, one_thread):
    with serving(tmp_path, catalog(project, models="all")) as served:
        client = served.client()
        base = answer(client, "base")
        tuned = answer(client, "run-aaaa")
        other = answer(client, "run-bbbb")
        assert len({base, tuned, other}) == 3
        assert answer(client, "base") == base  # adapters are off for the base
        assert answer(client, "shoptalk") == tuned


def test_an_adapter_for_another_base_is_refused(project: Project, tmp_path: Path, one_thread):
    with (
        serving(tmp_path, catalog(project, models="all")) as served,
        pytest.raises(openai.ConflictError) as caught,
    ):
        answer(served.client(), "run-foreign")
    assert caught.value.code == "adapter_base_mismatch"
    assert "other-base" in caught.value.message


def test_a_changed_adapter_under_the_same_name_is_refused(
    tiny_model: Path, tmp_path: Path, one_thread
):
    root = write_project(tmp_path / "p", tiny_model)
    add_run(root, "run-cccc", tiny_model, seed=4)
    (root / ".shoptalk" / "promoted-run").write_text("run-cccc\n", encoding="utf-8")
    with serving(tmp_path / "state", catalog(Project.open(root))) as served:
        client = served.client()
        first = answer(client, "shoptalk")
        assert answer(client, "shoptalk") == first
        add_run(root, "run-cccc", tiny_model, seed=5)  # retrained in place
        with pytest.raises(openai.ConflictError) as caught:
            answer(client, "shoptalk")
    assert caught.value.code == "model_changed"


def test_adapters_beyond_the_memory_cap_are_evicted_oldest_first(project: Project):
    small = catalog(project, models="all", adapter_cache_gb=1e-9)
    small.acquire(small.resolve("run-aaaa"))
    small.acquire(small.resolve("run-bbbb"))
    assert [p.parent.name for p in small.loaded()] == ["run-bbbb"]
    assert set(small._base.peft_config) == {small.verify(small.resolve("run-bbbb"))[:16]}
    roomy = catalog(project, models="all")
    roomy.acquire(roomy.resolve("run-aaaa"))
    roomy.acquire(roomy.resolve("run-bbbb"))
    assert [p.parent.name for p in roomy.loaded()] == ["run-aaaa", "run-bbbb"]


@pytest.mark.parametrize(
    ("mode", "with_run", "served", "rag"),
    [
        ("tuned+rag", "run-aaaa", "run-aaaa", True),
        ("tuned", "run-aaaa", "run-aaaa", False),
        ("base+rag", "run-aaaa", "base", True),
        # Chosen when another run was promoted (`models promote` since): stale, not applied.
        ("base+rag", "run-bbbb", "run-aaaa", False),
    ],
)
def test_the_aliases_answer_in_the_promoted_mode(project: Project, mode, with_run, served, rag):
    PromotedMode(mode=mode, run_id=with_run).write(project.state)
    try:
        names = catalog(project)
        for alias in ("shoptalk", "kestrel"):
            entry = names.resolve(alias)
            assert (entry.name, entry.rag) == (served, rag)
        assert not names.resolve("run-aaaa").rag and not names.resolve("base").rag
    finally:
        PromotedMode.clear(project.state)
