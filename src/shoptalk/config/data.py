"""The `data:` section: how sources become a dataset (clean, redact, dedupe, split, augment).

Every field here is hashed into the dataset's address (data/dataset.py): a
change to a dump (a field's name, order or serialization) renames every
dataset and retrains every run. tests/config/test_hashes.py pins them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)


class CleanSettings(BaseModel, extra="forbid"):
    nfkc: bool = Field(
        True,
        description="Unicode NFKC: full-width ＡＢＣ１２３ become ABC123; in Chinese text the "
        "full-width punctuation (，！？：；（）～) stays as it is",
    )
    min_chars: int = Field(2, ge=0, description="Drop user/assistant messages and chunks shorter")
    max_chars: int = Field(20000, ge=1, description="Drop conversations longer than this")
    boilerplate_min_docs: int = Field(
        3, ge=2, description="A line in at least this many source files is boilerplate"
    )


class DedupeSettings(BaseModel, extra="forbid"):
    near: bool = Field(True, description="Also remove near duplicates, not only exact ones")
    threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard similarity of n-gram sets that makes a near duplicate"
    )
    ngram: int = Field(5, ge=1, description="Characters per n-gram")
    num_perm: int = Field(64, ge=8, description="MinHash permutations")
    seed: int = Field(0, description="Seed of the MinHash permutations")


# Added after the first datasets were built: left out of the dump at their defaults.
NER_SETTINGS = ("ner", "ner_model", "person", "org", "address")


class PiiSettings(BaseModel, extra="forbid"):
    email: bool = Field(True, description="Email addresses")
    phone: bool = Field(
        True,
        description="Phone numbers: international (+CC), North American, mainland China mobile "
        "and landline",
    )
    cn_id: bool = Field(
        True, description="Chinese resident ID numbers (checksum and birth date validated)"
    )
    bank_card: bool = Field(
        True, description="Payment card numbers (Luhn and card-network prefix validated)"
    )
    iban: bool = Field(True, description="IBANs (mod-97 checksum validated)")
    ip: bool = Field(True, description="IPv4 and IPv6 addresses (not version numbers)")
    passport: bool = Field(
        True, description="Passport numbers, only next to a keyword such as 'passport' or '护照'"
    )
    url_credentials: bool = Field(
        True, description="User names and passwords inside URLs (scheme://user:pass@host)"
    )
    secret: bool = Field(
        True,
        description="API keys, tokens, private keys and spoken passwords ('password is ...')",
    )
    ner: Literal["off", "auto", "jieba", "presidio"] = Field(
        "off",
        description="Also find names and street addresses by NER. Text with Chinese "
        "characters goes through jieba; other text: 'auto' = through Presidio when the 'ner' "
        "extra and its spaCy pipeline are installed (else a warning), 'presidio' = the same "
        "but an error when they are missing, 'jieba' = left to the other detectors",
    )
    ner_model: str = Field(
        "en_core_web_sm",
        description="spaCy pipeline Presidio uses: an installed package name or a folder",
    )
    person: bool = Field(True, description="With ner: people's full names")
    org: bool = Field(
        False,
        description="With ner: organization names. Off by default: they are not personal "
        "data, and an organization's own FAQ names itself and its partners everywhere",
    )
    address: bool = Field(
        True,
        description="With ner: street addresses (a city, or a road without a number, is not one)",
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Values never redacted, e.g. the organization's public contacts: "
        "'@acme.example' keeps every address at that domain, '1-800-555-0100' that number",
    )

    @model_serializer(mode="wrap")
    def _without_ner_defaults(self, handler: SerializerFunctionWrapHandler) -> dict:
        # Datasets are addressed by a hash of their settings: with NER untouched they
        # must hash as before these fields existed, or every project would retrain.
        fields = type(self).model_fields
        return {
            k: v
            for k, v in handler(self).items()
            if k not in NER_SETTINGS or v != fields[k].get_default()
        }


# `data.replay.files` entries that are no file: bundled prompts the base model answers.
BUILTIN_REPLAY = "builtin:"
BUILTIN_REPLAY_SOURCES = ("general",)


# Self-replay is on by default: the default recipe alone lost 0.64 nats/token of
# retention on the bundled English example (the default gate allows 0.3) and with a
# tenth of self-replay lost 0.05, with the same or better closed-book domain recall
# (bench/RESULTS.md, "Self-replay, the finished run").
DEFAULT_REPLAY_FILES = [BUILTIN_REPLAY + "general"]


class ReplaySettings(BaseModel, extra="forbid"):
    files: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REPLAY_FILES),
        description="General-purpose chat files (Alpaca, ShareGPT, OpenAI-messages JSON/JSONL, "
        "LLaMA-Factory dataset_info.json), relative to the project or absolute; "
        "'builtin:general' = ~240 bundled general prompts (English and Chinese) answered once "
        "by the base model itself (self-replay, cached per base model)",
    )
    ratio: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="Share of the final training set (train.jsonl) drawn from the replay files; "
        "0 = off (no replay, and the base model is not loaded to answer the bundled prompts)",
    )
    seed: int = Field(0, description="Seed of the replay sample")

    @model_validator(mode="after")
    def _ratio_needs_files(self) -> ReplaySettings:
        if self.ratio > 0 and not self.files:
            raise ValueError(
                f"ratio {self.ratio} needs at least one file under data.replay.files "
                "(data.replay.ratio: 0 turns replay off)"
            )
        known = [BUILTIN_REPLAY + name for name in BUILTIN_REPLAY_SOURCES]
        for entry in self.files:
            if entry.startswith(BUILTIN_REPLAY) and entry not in known:
                raise ValueError(
                    f"unknown built-in replay source {entry!r}; expected one of {known}"
                )
        return self


class TeacherSettings(BaseModel, extra="forbid"):
    base_url: str = Field(description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8001/v1")
    model: str = Field(description="The teacher model's name at that endpoint")
    api_key_env: str = Field(
        "SHOPTALK_TEACHER_KEY", description="Environment variable holding the endpoint's key"
    )
    questions_per_chunk: int = Field(
        3, ge=1, le=20, description="Question-answer pairs asked for, and kept, per chunk"
    )
    max_requests: int = Field(500, ge=0, description="Cap on uncached calls per build")
    max_tokens: int = Field(512, ge=16, description="Longest reply of one call, in tokens")
    temperature: float = Field(
        0.3, ge=0, le=2, description="Sampling temperature of the teacher (0 = greedy)"
    )
    timeout_s: float = Field(120, gt=0, description="Seconds to wait for one reply")
    retries: int = Field(3, ge=0, description="Retries of a failed call, with backoff")


class SynthSettings(BaseModel, extra="forbid"):
    teacher: TeacherSettings | None = Field(
        None, description="Generate document QA with a teacher model; none = rule-based only"
    )


class DataSettings(BaseModel, extra="forbid"):
    on_error: Literal["stop", "skip"] = Field(
        "stop",
        description="On a bad row: stop with its error, or skip it and list it in the dataset report",
    )
    seed: int = Field(0, description="Seed for splits and augmentation")
    holdout_ratio: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Share of FAQ rows kept out of training when no questions are given",
    )
    validation_ratio: float = Field(
        0.05, ge=0.0, lt=0.5, description="Share of training examples used for validation"
    )
    question_variants: int = Field(
        3, ge=0, le=20, description="Rephrasings generated per FAQ question (no model needed)"
    )
    document_qa: bool = Field(True, description="Extract question-answer pairs from documents")
    document_text: bool = Field(True, description="Also train on document sections as plain text")
    refusals: bool = Field(
        True, description="Train 'I don't know' answers for questions the data cannot answer"
    )
    clean: CleanSettings = Field(
        default_factory=CleanSettings,
        description="Text cleaning (Unicode, control characters, boilerplate lines) and which "
        "records are too short or too long to keep",
    )
    redact_pii: bool = Field(
        True, description="Replace personal data and secrets with typed placeholders"
    )
    pii: PiiSettings = Field(
        default_factory=PiiSettings,
        description="Which kinds of personal data and secrets redaction looks for (each on or off)",
    )
    canaries: int = Field(
        0,
        ge=0,
        le=100,
        description="Leakage test: copies of N training FAQ rows with a fake API key planted in "
        "the answer; the scorecard checks the tuned model never says one (suite 'canaries')",
    )
    dedupe: DedupeSettings = Field(
        default_factory=DedupeSettings,
        description="Exact and near-duplicate removal (MinHash over character n-grams)",
    )
    refusal_answer: str = Field(
        "I'm sorry, I don't have that information in our documents.",
        description="What the assistant says when the data does not answer a question: "
        "trained into the tuned model, and, when changed from this default, what answers "
        "with retrieval say too (then naming what was searched) in its language",
    )

    @property
    def own_refusal_answer(self) -> str:
        """`refusal_answer` when the organization chose its words, "" while it is the default
        (then Chinese data trains a Chinese refusal, and retrieval's refusal is shoptalk's,
        naming what was searched: `rag.verify.in_own_words`)."""
        default = type(self).model_fields["refusal_answer"].default
        return "" if self.refusal_answer == default else self.refusal_answer

    split_by: Literal["ratio", "source"] = Field(
        "ratio",
        description="How held-out FAQ rows are chosen (no question files): 'ratio' = rows, "
        "'source' = whole FAQ files, so nothing from a held-out file is trained on",
    )
    replay: ReplaySettings = Field(
        default_factory=ReplaySettings,
        description="General-purpose conversations mixed into training to limit forgetting",
    )
    synth: SynthSettings = Field(
        default_factory=SynthSettings,
        description="Document QA written by a teacher model behind an OpenAI-compatible endpoint",
    )
