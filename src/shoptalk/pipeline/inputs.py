"""The training input: which view of the dataset a run trains on, chosen here and nowhere else.

    plain   the dataset as built
    raft    the dataset plus questions paired with the passages answering reads (`rag.raft`, on by default when there are documents)
    cpt     document text alone (`train.recipe: cpt`), of the plain or RAFT dataset

The run is named by the hash of the plain or RAFT dataset (`Project.run_id`), so
`shoptalk build` and `shoptalk train` with the same config train the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shoptalk.artifacts import DatasetArtifact
from shoptalk.pipeline.events import Event, OnEvent, ignore
from shoptalk.project import Project

InputKind = Literal["plain", "raft", "cpt"]


@dataclass(frozen=True)
class TrainingInput:
    kind: InputKind
    dataset: DatasetArtifact  # what the recipe reads
    hash: str  # what names the run: the plain or RAFT dataset's hash


def uses_raft(project: Project) -> bool:
    """RAFT examples need documents to read, and only an SFT recipe trains on answers."""
    config = project.config
    rag = config.rag
    return (
        rag.raft is not None
        and rag.enabled
        and bool(config.sources.docs)
        and config.train.recipe == "sft"
    )


def index_documents(project: Project, on_event: OnEvent = ignore) -> None:
    """The retrieval index of `sources.docs`; only changed documents are read and embedded."""
    if not project.config.sources.docs or not project.config.rag.enabled:
        return
    from shoptalk.rag.index import index_project

    message = "reading and embedding the documents that changed"
    on_event(Event(stage="index", status="started", artifact=str(project.index), message=message))
    report = index_project(project)
    on_event(
        Event(stage="index", status="done", artifact=str(report.folder), message=report.summary())
    )


def training_input(project: Project, dataset: DatasetArtifact, on_event: OnEvent) -> TrainingInput:
    """The view of `dataset` the recipe trains on (the index must be built for RAFT)."""
    named = dataset
    kind: InputKind = "plain"
    if uses_raft(project):
        from shoptalk.rag.raft import raft_view
        from shoptalk.rag.retrieve import open_index

        rag = project.config.rag
        named = raft_view(dataset, open_index(project), project.system_prompt, rag)
        kind = "raft"
        added = len(named.conversations("train")) - len(dataset.conversations("train"))
        message = f"raft view: {added} examples with selected passages  ({named.path})"
    else:
        message = f"the dataset as built  ({dataset.path})"
    read = named
    if project.config.train.recipe == "cpt":
        from shoptalk.train.cpt import document_view

        read, kind = document_view(named), "cpt"
        message = f"document text alone (continued pretraining)  ({read.path})"
    on_event(
        Event(
            stage="input",
            status="done",
            input_hash=named.hash,
            artifact=str(read.path),
            message=message,
        )
    )
    return TrainingInput(kind=kind, dataset=read, hash=named.hash)
