"""The dataset stage: replay mixing, held-out splits by source file, duplicate clusters."""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

import pytest
import yaml

from shoptalk.artifacts import DatasetArtifact
from shoptalk.config import DataSettings
from shoptalk.data.clean import source_file
from shoptalk.data.dataset import LATER_SETTINGS, build_dataset, settings_key
from shoptalk.data.report import build_report
from shoptalk.errors import ConfigError, SourceError
from shoptalk.project import Project

from projects import FAQ, write_project

PEER_ALPACA = (
    Path(__file__).resolve().parents[3] / "shared/peer-data/llamafactory/alpaca_en_demo.json"
)
WORDS = (
    "amber basil cedar delta ember fjord garnet harbor indigo juniper kelp lagoon meadow nectar "
    "onyx prairie quartz raven saffron tundra umber violet willow xenon yarrow zephyr anchor "
    "beacon canyon dune estuary falcon glacier heron island jetty kiln lantern marsh"
).split()


def sentence(rng: random.Random, n: int = 9) -> str:
    """Random words: no two sentences are near duplicates of each other."""
    return " ".join(rng.choices(WORDS, k=n)).capitalize()


def configure(root: Path, **data: object) -> Project:
    path = root / "shoptalk.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["data"] |= data
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return Project.open(root)


def build(project: Project) -> DatasetArtifact:
    return build_dataset(project.config, project.root, project.datasets)


def manifest(dataset: DatasetArtifact) -> dict:
    return json.loads((dataset.path / "manifest.json").read_text(encoding="utf-8"))


def write_faq(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(rows)


def write_alpaca(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = [
        {"instruction": sentence(rng) + "?", "input": "", "output": sentence(rng, 20) + "."}
        for _ in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_project(tmp_path / "kestrel", tmp_path / "no-model")


# --- replay ----------------------------------------------------------------------------


def test_self_replay_is_on_by_default_and_off_leaves_the_hash_alone(root):
    default = DataSettings()
    assert default.replay.files == ["builtin:general"] and default.replay.ratio == 0.1
    # The test projects turn it off (a tiny random model has nothing to replay).
    dataset = build(Project.open(root))
    m = manifest(dataset)
    assert m["counts"]["replay"] == 0 and m["replay"]["used"] == 0
    assert m["settings"]["replay"] == {"files": ["builtin:general"], "ratio": 0.0, "seed": 0}
    assert m["settings"]["split_by"] == "ratio"
    # Projects that use none of the later settings, or turn replay off, keep their dataset
    # hash (and trained run) from before those settings existed.
    assert settings_key(default) == default.model_dump_json(exclude=set(LATER_SETTINGS))
    off = DataSettings(replay={"ratio": 0})
    assert settings_key(off) == default.model_dump_json(exclude=set(LATER_SETTINGS))
    assert settings_key(DataSettings(replay={"ratio": 0, "seed": 1})) != settings_key(off)


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_replay_makes_up_the_ratio_of_train(root, ratio):
    write_alpaca(root / "general" / "alpaca.json", 300)
    project = configure(root, replay={"files": ["general/alpaca.json"], "ratio": ratio, "seed": 3})
    dataset = build(project)
    train = dataset.conversations("train")
    replayed = [c for c in train if c.source.startswith("general/alpaca.json:")]
    assert abs(len(replayed) - ratio * len(train)) <= 1, (len(replayed), len(train))
    assert {c.kind for c in replayed} == {"chat"}
    assert not any(c.source.startswith("general/") for c in dataset.conversations("val"))
    assert manifest(dataset)["counts"]["replay"] == len(replayed)


def test_replay_sample_is_seeded_and_redacted(root):
    write_alpaca(root / "general.json", 100)
    rows = json.loads((root / "general.json").read_text(encoding="utf-8"))
    for row in rows:
        row["output"] += " Write to replay.person@corp.example for more."
    (root / "general.json").write_text(json.dumps(rows), encoding="utf-8")
    settings = {"files": ["general.json"], "ratio": 0.3}
    first = build(configure(root, replay=settings | {"seed": 1}))
    again = build_dataset(Project.open(root).config, root, root / "other")
    other = build(configure(root, replay=settings | {"seed": 2}))
    ids = lambda d: {c.id for c in d.conversations("train") if c.source.startswith("general")}  # noqa: E731
    assert ids(first) == ids(again) and ids(first) != ids(other)
    assert "replay.person@corp.example" not in (first.path / "train.jsonl").read_text()
    assert manifest(first)["pii_redacted"]["email"] >= len(ids(first))


def test_replay_of_the_llamafactory_demo(root):
    if not PEER_ALPACA.is_file():
        pytest.skip(f"peer data not found at {PEER_ALPACA}")
    project = configure(root, replay={"files": [str(PEER_ALPACA)], "ratio": 0.2})
    train = build(project).conversations("train")
    replayed = [c for c in train if "alpaca_en_demo.json:" in c.source]
    assert abs(len(replayed) - 0.2 * len(train)) <= 1


def test_a_small_replay_pool_is_used_whole_with_a_warning(root, caplog):
    write_alpaca(root / "general.json", 5)
    project = configure(root, replay={"files": ["general.json"], "ratio": 0.9})
    with caplog.at_level(logging.WARNING, logger="shoptalk"):
        dataset = build(project)
    assert manifest(dataset)["replay"] | {"share_of_train": None} == {
        "files": ["general.json"],
        "available": 5,
        "used": 5,
        "share_of_train": None,
    }
    assert any("using all of them" in r.message for r in caplog.records)


def test_a_missing_replay_file_names_the_key(root):
    project = configure(root, replay={"files": ["nowhere.json"], "ratio": 0.1})
    with pytest.raises(SourceError, match=r"nowhere\.json.*data\.replay\.files\[0\]"):
        build(project)
    with pytest.raises(ConfigError, match=r"data\.replay.*needs at least one file"):
        configure(root, replay={"files": [], "ratio": 0.1})


# --- held-out split by source file -------------------------------------------------------


def faq_files(root: Path, n_files: int, rows_per_file: int) -> list[str]:
    rng = random.Random(7)
    names = []
    for i in range(n_files):
        rows = [(sentence(rng) + "?", sentence(rng, 14) + ".") for _ in range(rows_per_file)]
        write_faq(root / "faq" / f"part{i}.csv", rows)
        names.append(f"faq/part{i}.csv")
    return names


def no_questions(root: Path, faq: list[str]) -> None:
    path = root / "shoptalk.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["sources"] |= {"faq": faq, "questions": []}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_by_source_holds_out_whole_files(root, seed):
    names = faq_files(root, n_files=5, rows_per_file=6)
    no_questions(root, names)
    project = configure(root, split_by="source", holdout_ratio=0.3, seed=seed)
    dataset = build(project)
    split = manifest(dataset)["split"]
    held = set(split["heldout_files"])
    assert split["by"] == "source" and held and held < set(names)
    heldout = dataset.conversations("heldout")
    assert {source_file(c.source) for c in heldout} == held
    assert len(heldout) == 6 * len(held), "every row of a held-out file is held out"
    trained = dataset.conversations("train") + dataset.conversations("val")
    assert not [c.source for c in trained if source_file(c.source) in held]
    assert {source_file(c.source) for c in trained if c.kind == "faq"} == set(names) - held


def test_split_by_source_with_one_faq_file_falls_back_to_ratio(root, caplog):
    no_questions(root, ["faq.csv"])
    project = configure(root, split_by="source", holdout_ratio=0.3)
    with caplog.at_level(logging.WARNING, logger="shoptalk"):
        dataset = build(project)
    assert manifest(dataset)["split"] == {"by": "ratio"}
    assert 0 < len(dataset.conversations("heldout")) < len(FAQ)
    assert any(
        "split_by 'source' needs at least two FAQ files" in r.message for r in caplog.records
    )


# --- duplicate clusters with sources -----------------------------------------------------


def test_duplicate_clusters_record_their_sources(root):
    long_answer = "Ingrid Solberg runs the Oslo depot and its night shift from Monday to Friday."
    rows = [
        *FAQ,
        FAQ[0],
        (FAQ[1][0], long_answer),
        (FAQ[1][0], long_answer.replace("Friday", "Fri")),
    ]
    write_faq(root / "faq.csv", rows)
    project = Project.open(root)
    dataset = build(project)
    clusters = {c["kind"]: c for c in manifest(dataset)["duplicates"]}
    assert clusters["exact"]["kept_source"] == "faq.csv:2"
    assert clusters["exact"]["removed_sources"] == [f"faq.csv:{len(FAQ) + 2}"]
    assert clusters["near"]["kept_source"] == f"faq.csv:{len(FAQ) + 3}"
    assert clusters["near"]["removed_sources"] == [f"faq.csv:{len(FAQ) + 4}"]
    shown = build_report(project, dataset, None)["duplicates"]
    assert all(r["source"] for d in shown for r in d["removed"]), "removed rows keep their source"


def test_only_sources_with_kept_chinese_punctuation_get_a_new_hash():
    from shoptalk.data.dataset import holds_cjk_punctuation

    assert holds_cjk_punctuation("可以，谢谢".encode())
    assert holds_cjk_punctuation("可以，谢谢".encode("gb18030"))
    assert not holds_cjk_punctuation(b"question,answer\nDo you ship?,Yes.\n")
    assert not holds_cjk_punctuation("退货期限是七天。".encode())


def test_a_broken_question_file_stops_the_build_or_is_listed_as_skipped(tmp_path):
    root = write_project(tmp_path / "p", Path("unused-model"))
    with (root / "questions" / "domain.jsonl").open("a") as f:
        f.write("not json\n")
    with pytest.raises(SourceError, match=r"domain.jsonl:3: invalid JSON"):
        build(Project.open(root))
    skipped = manifest(build(configure(root, on_error="skip")))["skipped"]
    assert len(skipped) == 1 and "domain.jsonl:3" in skipped[0]
