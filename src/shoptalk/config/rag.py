"""The `rag:` section: how documents are chunked, embedded and retrieved, and RAFT training."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, Field, model_validator

log = logging.getLogger(__name__)


class RaftSettings(BaseModel, extra="forbid"):
    seed: int = Field(0, description="Seed for which examples `max_examples` picks")
    max_examples: int | None = Field(
        100,
        ge=1,
        description="At most this many examples, one per distinct answer, picked at random "
        "(each is ~4x a FAQ row's tokens: this bounds the extra training time; on the English "
        "example 100 add ~0.35x the training tokens, 150 ~0.55x, none ~600 examples and 2.6x: "
        "the default keeps the example's build under 30 minutes on 2 cores); none = one "
        "per grounded training conversation whose selected passages support its answer",
    )
    # Off: measured on the English example at 0.15 (bench/RESULTS.md), refusal rose by one
    # question of 18 (0.667 -> 0.778) while answerable questions refused rose 0.032 -> 0.339
    # and recall with retrieval fell ~0.25: the 135M model learns to refuse when unsure.
    refusal_ratio: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Refusal examples per answering example: the same questions read without "
        "the chunks holding their answer, answered with the 'not in the documents' message "
        "(so refusing follows the passages, not the question); 0 = none (the default: at "
        "0.15 the default model refused a third of answerable questions)",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: object) -> object:
        # RAFT now trains on the passages answering reads (rag/raft.py): the model reads
        # what `rag.select` picks, so chunk counts and the oracle share no longer
        # exist. An older shoptalk.yaml loads.
        if isinstance(data, dict):
            for key, why in REMOVED_RAFT_KEYS.items():
                if key in data:
                    log.warning("rag.raft.%s is no longer used: %s; remove the key", key, why)
            data = {k: v for k, v in data.items() if k not in REMOVED_RAFT_KEYS}
        return data


REMOVED_RAFT_KEYS = {
    "chunks": "examples read the passages rag.select picks (rag.select.sentences)",
    "candidates": "examples read what rag.top_k retrieves, as answers do",
    "oracle_ratio": "refusals are the answered questions read without the chunks holding "
    "their answer (rag.raft.refusal_ratio)",
}


class SelectSettings(BaseModel, extra="forbid"):
    # Why 4: on three held-out organizations' answerable questions base+RAG recalled more
    # with 4 than with 3 (9 questions better, 3 worse of 160; mean +0.038, 95% interval
    # -0.006..0.081) at a few more tokens per prompt (bench/RESULTS.md).
    sentences: int = Field(
        4, ge=1, le=20, description="Sentences of the retrieved chunks the model reads, best first"
    )
    lexical_weight: float = Field(
        0.3,
        ge=0.0,
        le=10.0,
        description="Weight of the share of the question's words found in a sentence, "
        "added to the embedding similarity of question and sentence",
    )
    with_heading: bool = Field(
        True,
        description="Embed each sentence under its chunk's heading path (a table row or list "
        "item says what it is about only there)",
    )
    neighbours: int = Field(
        0, ge=0, le=3, description="Sentences shown each side of a selected one, from its chunk"
    )
    max_tokens: int = Field(
        200,
        ge=16,
        description="Most tokens of selected text the model reads (the best sentence always)",
    )
    max_false_refusal: float = Field(
        0.05,
        ge=0.0,
        le=0.5,
        description="With `refuse_on_coverage`: the abstention rule fitted at index time "
        "(rag/abstain.py) refuses at most "
        "this share of the project's own answerable FAQ questions; a higher bound refuses more "
        "questions the documents do not answer, and more that they do. Users' questions, "
        "worded less like the documents than FAQ questions are, were refused about twice as "
        "often (bench/RESULTS.md, Abstention), so this is half the rate aimed at",
    )
    refuse_on_coverage: bool = Field(
        False,
        description="Also refuse, before generation, when the fitted abstention rule finds the "
        "passages cover too little of the question's words (rag/abstain.py). Off: on an "
        "organization whose questions were written by someone else, in their own words, it "
        "refused 82% of the answerable questions (bench/RESULTS.md); the checks that a "
        "question's value type, period and names are in the passages still refuse, and an "
        "answer the passages do not support is still never shown as fact",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: object) -> object:
        # `min_question_overlap` was replaced by the fitted abstention rule: an older
        # shoptalk.yaml still loads, and says the key no longer does anything.
        if isinstance(data, dict) and "min_question_overlap" in data:
            log.warning(
                "rag.select.min_question_overlap is no longer used: the abstention rule fitted "
                "at index time decides (rag.select.max_false_refusal); remove the key"
            )
            data = {k: v for k, v in data.items() if k != "min_question_overlap"}
        return data


class RagSettings(BaseModel, extra="forbid"):
    enabled: bool = Field(True, description="Build the retrieval index in `shoptalk build`")
    embedding_model: str = Field(
        "default",
        description="'default' (the bundled all-MiniLM-L6-v2, English), a local folder or a "
        "sentence-transformers model name; for Chinese use a multilingual one such as "
        "paraphrase-multilingual-MiniLM-L12-v2",
    )
    chunk_tokens: int = Field(
        200, ge=32, description="Largest chunk, in tokens of the embedding model's tokenizer"
    )
    overlap_tokens: int = Field(
        40, ge=0, description="Sentences repeated from the end of one chunk at the next one's start"
    )
    index_faq: bool = Field(
        True,
        description="Also index each FAQ row (sources.faq) as one chunk, cited as 'faq.csv:LINE', "
        "with the groups a document at that path would get",
    )
    batch_size: int = Field(32, ge=1, description="Chunks embedded per batch")
    top_k: int = Field(5, ge=1, le=50, description="Chunks given to the model per question")
    fusion: Literal["interleave", "rrf"] = Field(
        "interleave",
        description="How the embedding ranking and the BM25 ranking become one: 'interleave' "
        "takes their best chunks in turn (each ranking's first chunk is always read), 'rrf' "
        "adds reciprocal ranks (a chunk both rank moderately beats one only the other ranks "
        "first). On three organizations' questions written by others the fact reached the "
        "selected sentences for 127 of 159 questions with 'interleave', 114 with 'rrf' "
        "(bench/RESULTS.md)",
    )
    min_similarity: float = Field(
        0.25,
        ge=-1.0,
        le=1.0,
        description="Below this cosine similarity between the question and its closest chunk "
        "the assistant answers that the documents do not say",
    )
    reranker: str | None = Field(
        None, description="A cross-encoder (folder or name) that reorders the fused candidates"
    )
    qdrant_url: str | None = Field(
        None,
        description="Also serve vector search from Qdrant: an http(s) URL of a server, or a "
        "folder (relative to the project) for Qdrant's local mode; none = the embedded index only",
    )
    qdrant_collection: str = Field("shoptalk", description="The Qdrant collection to use")
    qdrant_key_env: str = Field(
        "QDRANT_API_KEY", description="Environment variable holding the Qdrant server's key"
    )
    pgvector_url: str | None = Field(
        None,
        description="Or serve vector search from PostgreSQL with the pgvector extension: a "
        "postgresql:// URL without the password (libpq reads PGPASSWORD or ~/.pgpass); "
        "none = the embedded index only",
    )
    pgvector_table: str = Field(
        "shoptalk_chunks",
        pattern=r"^[a-z_][a-z0-9_]{0,50}$",
        description="The table that holds the vectors (created if missing)",
    )
    access: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Document path globs (relative to the project, '*' crosses folders) -> the "
        "groups allowed to read them, e.g. {'docs/hr/*': ['hr']}; front matter 'groups:' wins; "
        "a document no glob matches is readable by everyone",
    )
    select: SelectSettings = Field(
        default_factory=SelectSettings,
        description="Which sentences of the retrieved chunks the model reads, and how the "
        "abstention rule that decides whether they answer is fitted (rag/select.py, "
        "rag/abstain.py)",
    )
    raft: RaftSettings | None = Field(
        default_factory=RaftSettings,
        description="Also train on the dataset's questions paired with the passages answering "
        "reads for them (RAFT: `rag.select`'s sentences, the question's own FAQ row left "
        "out), answered with the known answer and its citation, so the tuned model learns to "
        "read and cite passages the way it is asked to (on by default: the promoted mode "
        "answers with retrieval, and a model trained closed book answers from memory instead "
        "of the passage); null = off",
    )
    copy_numbers: Literal["tuned", "always", "never"] = Field(
        "tuned",
        description="Answers from passages write no number the passages do not hold "
        "(modeling/copy_numbers.py: the tokens that would are masked while generating): "
        "'tuned' for the build's own models (trained to read; the untuned default model "
        "answered worse under it: bench/RESULTS.md), 'always' for the base model too (a "
        "larger instruct model), 'never'. Answers are verified either way",
    )
    folder_groups: bool = Field(
        False,
        description="Also restrict each document to its folder's name as a group "
        "(docs/hr/a.md -> 'docs/hr') when neither front matter nor 'access' names groups",
    )

    def shaping_dump(self) -> str:
        """The settings as they shape the index's abstention rule and the reader examples
        (hashed there): all but `copy_numbers`, which only decides how answers are decoded."""
        return self.model_dump_json(exclude={"copy_numbers"})

    def copies_numbers(self, tuned: bool) -> bool:
        """`copy_numbers` for a tuned model (a build's run) or the base model."""
        return self.copy_numbers == "always" or (self.copy_numbers == "tuned" and tuned)

    @model_validator(mode="after")
    def _one_vector_server(self) -> RagSettings:
        if self.qdrant_url and self.pgvector_url:
            raise ValueError(
                "set qdrant_url or pgvector_url, not both: one server mirrors the index"
            )
        if self.pgvector_url and not self.pgvector_url.startswith(("postgresql", "postgres://")):
            raise ValueError(
                f"pgvector_url: expected a postgresql:// URL, got {self.pgvector_url.split(':')[0]}:..."
            )
        return self
