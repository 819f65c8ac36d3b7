"""The models table: register, list, get, promote, delete; promotion synced with promoted-run."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.errors import ShoptalkError
from shoptalk.registry.db import connect
from shoptalk.registry.models import (
    ExportInfo,
    ModelInfo,
    Registry,
    add_export,
    delete,
    get_model,
    list_models,
    promote,
    promote_run,
    promoted_model,
    register_model,
    run_info,
)


@pytest.fixture
def db(tmp_path: Path) -> Registry:
    return connect(f"sqlite:///{tmp_path / 'shoptalk.db'}")


def model(id_: str, created: str, **extra) -> ModelInfo:
    return ModelInfo(id=id_, base_model="default", dataset_hash="d1", created=created, **extra)


def test_register_list_get(db: Registry) -> None:
    register_model(db, model("run-a", "2026-01-01T00:00:00+00:00", headline={"domain.bleu": 0.5}))
    register_model(db, model("run-b", "2026-01-02T00:00:00+00:00"))

    assert [m.id for m in list_models(db)] == ["run-b", "run-a"]
    got = get_model(db, "run-a")
    assert got.headline == {"domain.bleu": 0.5} and got.dataset_hash == "d1"
    assert not got.promoted and promoted_model(db) is None


def test_reregistering_keeps_exports_and_promotion(db: Registry) -> None:
    register_model(db, model("run-a", "2026-01-01T00:00:00+00:00"))
    add_export(db, "run-a", ExportInfo(format="hf", path="/x", parity_passed=True, report="/x/p"))
    promote(db, "run-a")

    register_model(db, model("run-a", "", scorecard_path="/evals/run-a/scorecard.json"))

    got = get_model(db, "run-a")
    assert got.promoted and [e.format for e in got.exports] == ["hf"]
    assert got.scorecard_path == "/evals/run-a/scorecard.json"
    assert got.created == "2026-01-01T00:00:00+00:00"


def test_a_new_export_of_the_same_kind_replaces_the_old(db: Registry) -> None:
    register_model(db, model("run-a", ""))
    for sha in ("1" * 64, "2" * 64):
        add_export(
            db,
            "run-a",
            ExportInfo(
                format="gguf",
                quant="f16",
                path="/g",
                files={"model-f16.gguf": sha},
                parity_passed=True,
                report="/g/parity.txt",
            ),
        )
    add_export(
        db,
        "run-a",
        ExportInfo(format="gguf", quant="q8_0", path="/q", parity_passed=True, report=""),
    )
    exports = get_model(db, "run-a").exports
    assert [(e.quant, e.files.get("model-f16.gguf")) for e in exports] == [
        ("f16", "2" * 64),
        ("q8_0", None),
    ]


def test_only_one_model_is_promoted(db: Registry) -> None:
    register_model(db, model("run-a", ""))
    register_model(db, model("run-b", ""))
    promote(db, "run-a")
    promote(db, "run-b")
    assert promoted_model(db).id == "run-b"
    assert not get_model(db, "run-a").promoted


def test_delete_refuses_the_promoted_model_unless_forced(db: Registry) -> None:
    register_model(db, model("run-a", ""))
    register_model(db, model("run-b", ""))
    promote(db, "run-a")

    with pytest.raises(ShoptalkError, match="run-a is the promoted model.*--force"):
        delete(db, "run-a")
    delete(db, "run-b")
    delete(db, "run-a", force=True)
    assert list_models(db) == []


def test_unknown_id_names_the_known_ones(db: Registry) -> None:
    register_model(db, model("run-a", ""))
    with pytest.raises(ShoptalkError, match="No model 'run-x'.*known: run-a"):
        get_model(db, "run-x")


def test_promote_run_syncs_the_promoted_run_file(tmp_path: Path) -> None:
    from shoptalk.project import Project

    (tmp_path / "shoptalk.yaml").write_text("name: Test\n")
    project = Project.open(tmp_path)
    run = RunArtifact(path=project.runs / "run-abc", run_id="run-abc")
    (run.final).mkdir(parents=True)
    write_json(run.path / "card.json", {"base_model": "default", "dataset_hash": "h1"})
    write_json(
        project.evals / "run-abc" / "scorecard.json",
        {"suites": {"domain": {"tuned": {"key_fact_recall": 0.75}}}},
    )

    promote_run(project, run)

    assert project.promoted_run().run_id == "run-abc"
    info = run_info(project, run)
    assert info.dataset_hash == "h1" and info.headline == {"domain.key_fact_recall": 0.75}
    from shoptalk.registry.models import open_registry

    assert promoted_model(open_registry(project)).id == "run-abc"


def test_forced_delete_of_the_promoted_model_clears_promoted_run(tmp_path: Path) -> None:
    from shoptalk.project import Project
    from shoptalk.registry.models import delete_model

    (tmp_path / "shoptalk.yaml").write_text("name: Test\n")
    project = Project.open(tmp_path)
    run = RunArtifact(path=project.runs / "run-abc", run_id="run-abc")
    run.final.mkdir(parents=True)
    promote_run(project, run)

    delete_model(project, "run-abc", force=True)

    assert not project.promoted_run_file.exists()
    assert run.final.is_dir()  # registry entries go; files stay
