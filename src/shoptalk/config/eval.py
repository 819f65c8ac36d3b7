"""The `eval:` section: the scorecard's generation settings, the gate and the optional judge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class GateRule(BaseModel, extra="forbid"):
    suite: str = Field(description="Suite name, or '*' for every suite (of `kind`, if given)")
    kind: Literal["domain", "unanswerable", "style", "retention", "canary"] | None = Field(
        None, description="Only suites of this kind; with a named suite, its expected kind"
    )
    metric: str = Field(description="Metric name, e.g. key_fact_recall, refusal_rate, rouge_l")
    min_tuned: float | None = Field(None, description="The tuned model's score must be at least")
    min_gain: float | None = Field(None, description="tuned - base must be at least")
    max_drop: float | None = Field(
        None, ge=0, description="base - tuned may be at most (for retention suites)"
    )

    @model_validator(mode="after")
    def _has_a_threshold(self) -> GateRule:
        if self.min_tuned is None and self.min_gain is None and self.max_drop is None:
            raise ValueError(
                f"gate rule for suite {self.suite!r}, metric {self.metric!r} sets no threshold: "
                "give min_tuned, min_gain or max_drop"
            )
        return self


class GateSettings(BaseModel, extra="forbid"):
    rules: list[GateRule] = Field(
        default_factory=list, description="Thresholds the scorecard must meet; none = always pass"
    )


class JudgeSettings(BaseModel, extra="forbid"):
    url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8001/v1")
    model: str = Field(description="The judge model's name at that endpoint")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the endpoint's key (none = no key)"
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one verdict")
    max_questions: int | None = Field(
        None, ge=1, description="Judge at most this many questions (none = all with a reference)"
    )


class EvalSettings(BaseModel, extra="forbid"):
    max_new_tokens: int = Field(
        64, ge=1, le=4096, description="Longest answer generated per question, in tokens (greedy)"
    )
    batch_size: int = Field(16, ge=1, description="Questions answered together in one batch")
    retention: bool = Field(
        True,
        description="Also check general ability was kept: the base's answers to bundled general "
        "prompts (suite 'retention', metric log_likelihood) and general-knowledge questions "
        "(suite 'general_qa')",
    )
    gate: GateSettings = Field(
        default_factory=GateSettings,
        description="Thresholds a scorecard must meet before the tuned model is promoted",
    )
    judge: JudgeSettings | None = Field(
        None,
        description="LLM-as-judge at an OpenAI-compatible endpoint: base vs tuned against the "
        "reference, both orders (suite 'judge'); none = not judged",
    )
    rag: bool = Field(
        True,
        description="Also score base+RAG and tuned+RAG whenever a retrieval index exists: every "
        "question asked again with the sentences selected from what retrieval finds, the answer "
        "verified and repaired as `ask` shows it (suites '<suite>+rag'); every mode counts its "
        "unsupported claims",
    )
