"""Style material as a source: declared under sources.style or recognized among documents,
its rules written beside the dataset and put into the system prompt every mode uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shoptalk.config import Sources
from shoptalk.data.dataset import build_dataset, dataset_hash
from shoptalk.data.sources import read_sources
from shoptalk.errors import SourceError
from shoptalk.project import Project

from projects import write_project

GUIDE = """# How we write to members

Open every email with "Hello {first name}," and never with a generic salutation.
Never say "no worries".
Close with "Warm wishes, the Member Desk".
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_project(tmp_path / "org", tmp_path / "no-model")


def declare_style(root: Path, entries: list[str]) -> Project:
    path = root / "shoptalk.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["sources"]["style"] = entries
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return Project.open(root)


def test_declared_style_rules_are_written_beside_the_dataset(root):
    (root / "voice").mkdir()
    (root / "voice" / "guide.md").write_text(GUIDE, encoding="utf-8")
    before = dataset_hash(Project.open(root).config, root)
    project = declare_style(root, ["voice"])
    dataset = build_dataset(project.config, root, project.datasets)
    assert dataset.hash != before  # the style material is an input of the dataset
    style = dataset.style()
    assert style["greeting"] == "Hello {first name},"
    assert style["sign_off"] == "Warm wishes, the Member Desk"
    assert "no worries" in style["forbidden"]
    assert dataset.manifest()["style"]["files"] == {"voice/guide.md": "listed under sources.style"}
    # Style material is not knowledge: not among the document texts trained on as facts.
    assert not any("Member Desk" in c.text for c in dataset.texts())


def test_a_project_without_style_material_keeps_its_hash_and_prompt(root):
    project = Project.open(root)
    hashed = dataset_hash(project.config, root)
    dataset = build_dataset(project.config, root, project.datasets)
    assert dataset.hash == hashed
    assert dataset.manifest()["style"]["files"] == {}
    assert project.system_prompt == project.config.system_prompt


def test_a_guide_among_documents_is_recognized_and_stays_a_document(root):
    guide = GUIDE.replace("How we write to members", "Our tone of voice")
    (root / "docs" / "writing.md").write_text(guide, encoding="utf-8")
    project = Project.open(root)
    dataset = build_dataset(project.config, root, project.datasets)
    files = dataset.manifest()["style"]["files"]
    assert (
        list(files) == ["docs/writing.md"] and "heading about writing" in files["docs/writing.md"]
    )
    assert dataset.style()["sign_off"] == "Warm wishes, the Member Desk"


def test_a_missing_style_file_names_the_file_and_key(tmp_path):
    with pytest.raises(SourceError) as err:
        read_sources(tmp_path, Sources(style=["tone/guide.md"]))
    assert "guide.md" in str(err.value) and "sources.style" in str(err.value)


def test_an_unsupported_style_file_names_the_file(tmp_path):
    (tmp_path / "guide.rtf").write_text("x", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        read_sources(tmp_path, Sources(style=["guide.rtf"]))
    assert "guide.rtf" in str(err.value)


def test_rules_from_a_guide_reach_the_rendered_system_prompt(root):
    from shoptalk.pipeline import stages

    (root / "voice.md").write_text(GUIDE, encoding="utf-8")
    project = declare_style(root, ["voice.md"])
    stages.dataset(project, lambda event: None)
    prompt = project.system_prompt
    assert prompt.startswith(project.config.system_prompt)
    assert '"Hello {first name},"' in prompt and '"Warm wishes, the Member Desk"' in prompt
    assert '"no worries"' in prompt


def test_the_drafts_the_build_trains_on_follow_the_rules(root):
    from shoptalk.data.style import StyleRules, problems

    (root / "voice.md").write_text(GUIDE, encoding="utf-8")
    project = declare_style(root, ["voice.md"])
    dataset = build_dataset(project.config, root, project.datasets)
    rules = StyleRules.model_validate(dataset.style())
    train = dataset.conversations("train") + dataset.conversations("val")
    drafts = [c for c in train if c.messages[-1].content.startswith("Hello")]
    assert drafts
    for draft in drafts:
        assert problems(draft.messages[-1].content, rules) == []
        assert draft.messages[-1].content.endswith("Warm wishes, the Member Desk")


def test_without_style_material_no_drafts_are_added(root):
    project = Project.open(root)
    dataset = build_dataset(project.config, root, project.datasets)
    train = dataset.conversations("train")
    assert not any("Warm wishes" in c.messages[-1].content for c in train)
