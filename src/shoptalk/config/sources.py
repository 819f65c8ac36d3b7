"""The `sources:` section: the organization's files, read by the data stage and the index.

Paths are relative to the project folder (or absolute); a folder is read
recursively, hidden files skipped.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Sources(BaseModel, extra="forbid"):
    docs: list[str] = Field(
        default_factory=list,
        description="Document files or folders (.md, .markdown, .txt, .html, .htm, .pdf, .docx)",
    )
    faq: list[str] = Field(
        default_factory=list,
        description="FAQ sheets: CSV, TSV or XLSX with question and answer columns, or JSONL/JSON",
    )
    conversations: list[str] = Field(
        default_factory=list,
        description="Chats: Alpaca, ShareGPT or OpenAI-messages JSONL/JSON, LLaMA-Factory "
        "dataset_info.json, or a chat export CSV",
    )
    questions: list[str] = Field(
        default_factory=list,
        description="Held-out question files for the scorecard; none = a held-out split of the FAQ",
    )
    preferences: list[str] = Field(
        default_factory=list,
        description="Preference pairs for DPO (.jsonl/.json): prompt/chosen/rejected, OpenAI DPO "
        "(input, preferred_output, non_preferred_output), LLaMA-Factory ranking files or their "
        "dataset_info.json",
    )
    style: list[str] = Field(
        default_factory=list,
        description="Style material (.md, .markdown, .txt, .html, .htm, .pdf, .docx): tone guides, "
        "past replies, brand copy. Their rules (greeting, sign-off, forbidden phrases, register, "
        "and a section's rules for one situation: 'When a customer tells us ...:') are written to "
        "the dataset's style.json; they are never indexed or trained on as facts. "
        "Documents under `docs` that read as a tone guide add their rules too and stay in the index",
    )
