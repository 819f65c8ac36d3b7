"""The whole of `shoptalk.yaml`: the top-level keys and one section per stage."""

from __future__ import annotations

from pydantic import BaseModel, Field

from shoptalk.config.data import DataSettings
from shoptalk.config.eval import EvalSettings
from shoptalk.config.rag import RagSettings
from shoptalk.config.serve import ServeSettings
from shoptalk.config.sources import Sources
from shoptalk.config.train import TrainSettings


class ShoptalkConfig(BaseModel, extra="forbid"):
    name: str = Field("My organization", description="The organization's name")
    system_prompt: str = Field(
        "You are a helpful assistant for our organization. Answer with our facts; "
        "if you do not know, say so.",
        description="Used identically at training, evaluation and chat time",
    )
    base_model: str = Field(
        "default", description="'default', a local folder, a .gguf file or a hub id"
    )
    sources: Sources = Field(
        default_factory=Sources,
        description="The organization's files, relative to the project folder",
    )
    data: DataSettings = Field(
        default_factory=DataSettings,
        description="How sources become a dataset: cleaning, PII redaction, deduplication, "
        "splits and augmentation (`shoptalk data`)",
    )
    train: TrainSettings = Field(
        default_factory=TrainSettings,
        description="Fine-tuning: the recipe, the method and their settings (`shoptalk train`)",
    )
    eval: EvalSettings = Field(
        default_factory=EvalSettings,
        description="The scorecard (base vs tuned) and the gate before promotion (`shoptalk eval`)",
    )
    serve: ServeSettings = Field(
        default_factory=ServeSettings,
        description="The OpenAI-compatible API and web console (`shoptalk serve`)",
    )
    rag: RagSettings = Field(
        default_factory=RagSettings, description="Retrieval over sources.docs (`shoptalk index`)"
    )
