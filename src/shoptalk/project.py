"""Where a project's files live. Everything shoptalk writes is under `.shoptalk/`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shoptalk.artifacts import (
    DATASETS_DIR,
    EVALS_DIR,
    EXPORTS_DIR,
    INDEX_DIR,
    JOBS_DIR,
    RUNS_DIR,
    STYLE_FILE,
    EvalArtifact,
    JobArtifact,
    RunArtifact,
    read_json,
    write_atomic,
)
from shoptalk.config import CONFIG_NAME, ShoptalkConfig, Sources, dump_config, load_config
from shoptalk.errors import ConfigError, ShoptalkError
from shoptalk.modeling.chat_format import styled_system_prompt
from shoptalk.modeling.load import resolve_base_model
from shoptalk.text import is_chinese


@dataclass(frozen=True)
class Project:
    root: Path
    config: ShoptalkConfig

    @classmethod
    def open(cls, root: Path | str) -> Project:
        root = Path(root).resolve()
        return cls(root, load_config(root))

    @property
    def state(self) -> Path:
        return self.root / ".shoptalk"

    @property
    def datasets(self) -> Path:
        return self.state / DATASETS_DIR

    @property
    def runs(self) -> Path:
        return self.state / RUNS_DIR

    @property
    def evals(self) -> Path:
        return self.state / EVALS_DIR

    @property
    def index(self) -> Path:
        return self.state / INDEX_DIR

    @property
    def style_file(self) -> Path:
        """The style rules of the last dataset built (its style.json, copied by the data stage)."""
        return self.state / STYLE_FILE

    @property
    def style(self) -> dict:
        """The style rules (data.style.StyleRules as a dict; empty without style material)."""
        return read_json(self.style_file) or {}

    @property
    def system_prompt(self) -> str:
        """The system prompt every mode uses: the config's, then the style material's rules
        (which only a drafting request is asked with: `chat_format.for_request`)."""
        return styled_system_prompt(self.config.system_prompt, self.style)

    @property
    def organization(self) -> str:
        """The organization's name (`name:`), or "" while it is the default nobody chose."""
        name = self.config.name.strip()
        return "" if name == ShoptalkConfig.model_fields["name"].default else name

    @property
    def exports(self) -> Path:
        return self.state / EXPORTS_DIR

    def job(self, job_id: str) -> JobArtifact:
        return JobArtifact(path=self.state / JOBS_DIR / job_id)

    def run(self, run_id: str) -> RunArtifact:
        return RunArtifact(path=self.runs / run_id, run_id=run_id)

    def eval_of(self, name: str) -> EvalArtifact:
        """The eval folder of a run (or of a comparison), as the build writes it."""
        return EvalArtifact(path=self.evals / name)

    @property
    def latest_run_file(self) -> Path:
        return self.state / "latest-run"

    @property
    def promoted_run_file(self) -> Path:
        """The run that passed the gate: what `ask`, `chat` and serving use."""
        return self.state / "promoted-run"

    def run_id(self, dataset_hash: str) -> str:
        """A run is named by what determines its result: data, base model and settings."""
        exclude = {"device", "checkpoint_every", "keep_checkpoints", "trackers"}
        # Exact recomputation: on or off, the same result.
        exclude.add("gradient_checkpointing")
        if not self.config.train.groups:
            # Public documents only, the default: the runs named before the setting existed.
            exclude.add("groups")
        if self.config.train.recipe == "sft":
            # DPO after SFT is its own run (dpo_run_id): its settings leave SFT's alone.
            exclude.add("dpo")
        train = self.config.train.model_dump(exclude=exclude)
        key = json.dumps(
            {
                "data": dataset_hash,
                "base": self.config.base_model,
                "train": train,
                "system": self.config.system_prompt,
            },
            sort_keys=True,
        )
        return "run-" + hashlib.sha256(key.encode()).hexdigest()[:12]

    def dpo_run_id(self, sft_run_id: str) -> str:
        """The DPO stage on top of an SFT run, named by that run and the DPO settings."""
        key = json.dumps(self.config.train.dpo.model_dump(), sort_keys=True)
        return f"{sft_run_id}-dpo-{hashlib.sha256(key.encode()).hexdigest()[:6]}"

    def latest_run(self) -> RunArtifact:
        """The run trained last; raises if there is none yet."""
        return self._run_in(self.latest_run_file, "No trained model")

    def promoted_run(self) -> RunArtifact:
        """The run that passed the gate last; raises if none did."""
        return self._run_in(
            self.promoted_run_file, "No promoted model (none trained, or the gate failed)"
        )

    def _run_in(self, pointer: Path, what: str) -> RunArtifact:
        run_id = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
        if not run_id or not self.run(run_id).done:
            raise ShoptalkError(
                f"{what} in {self.root} yet: run `shoptalk build {self.root}` first."
            )
        return self.run(run_id)

    def promote(self, run: RunArtifact) -> None:
        write_atomic(self.promoted_run_file, run.run_id + "\n")


# `shoptalk init` (and the console's new projects): a shoptalk.yaml that works as is.


def relative(path: str, root: Path) -> str:
    """Store paths relative to the project folder so the project can move."""
    absolute = Path(path).expanduser().resolve()
    if not absolute.exists():
        raise ConfigError(f"{path}: file or folder not found")
    return Path(os.path.relpath(absolute, root.resolve())).as_posix()


# How much of the sources `first_system_prompt` reads to tell their language.
_LANGUAGE_SAMPLE_CHARS = 20_000
# What `text_files` lists: sources read as text without a parser.
_TEXT_SUFFIXES = {".md", ".txt", ".csv", ".jsonl", ".json", ".html", ".htm"}


def first_system_prompt(name: str, sources: list[Path]) -> str:
    """The system prompt `init` writes, in Chinese for a Chinese name or sources whose first
    text files are mostly Chinese: a Chinese organization's assistant introduces itself in
    Chinese (the persona and its introduction, `rag.persona`, are read from this prompt).
    It gives the assistant the name the sources give it, if they do (`assistant_named`)."""
    called = assistant_named(sources)
    if is_chinese(name) or is_chinese(" ".join(_text_sample(path) for path in sources)):
        named = f"“{called}”" if called else ""
        return f"你是{name}的智能助手{named}。请用{name}的资料回答；不知道时请直说。"
    you = f"{called}, the assistant" if called else "the assistant"
    return f"You are {you} of {name}. Answer with {_possessive(name)} facts; if you do not know, say so."


def _possessive(name: str) -> str:
    """ "Acme's", but "Health Partners'" (a name ending in a plural keeps the apostrophe only)."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


# How documents name the organization's assistant: "Ridge, our assistant", "our virtual
# assistant, Max", "an assistant called Max", 智能助手“小康”, 名为“小康”的助手.
_ASSISTANT_NAMED = re.compile(
    r"\b([A-Z][\w-]+),\s+our\s+(?:[\w-]+\s+){0,2}assistant\b"
    r"|\bour\s+(?:[\w-]+\s+){0,2}assistant,?\s+(?:named\s+|called\s+)?\"?([A-Z][\w-]+)\b"
    r"|\bassistant\s+(?:named|called)\s+\"?([A-Z][\w-]+)\b"
    r"|助手(?:叫做|名叫|名为)?[“「\"]([^”」\"\n]{1,8})[”」\"]"
    r"|(?:名为|叫做|名叫)[“「\"]([^”」\"\n]{1,8})[”」\"]的(?:智能)?助手"
)
# Capitalized words that follow "our assistant," without being its name.
_NOT_NAMES = frozenset("The This That It We You Our A An If When For And But Please".split())


def assistant_named(sources: list[Path]) -> str | None:
    """The name the sources give the organization's assistant most often, if any."""
    counts: Counter[str] = Counter()
    for path in sources:
        for file in text_files(path):
            text = file.read_text(encoding="utf-8", errors="ignore")
            for match in _ASSISTANT_NAMED.finditer(text):
                found = next(group for group in match.groups() if group)
                if found not in _NOT_NAMES:
                    counts[found] += 1
    return counts.most_common(1)[0][0] if counts else None


def _text_sample(path: Path) -> str:
    """The first characters of the text files at `path` (a file or a folder's files)."""
    text = ""
    for file in text_files(path):
        with file.open(encoding="utf-8", errors="ignore") as handle:
            text += handle.read(_LANGUAGE_SAMPLE_CHARS - len(text))
        if len(text) >= _LANGUAGE_SAMPLE_CHARS:
            break
    return text


def text_files(path: Path) -> list[Path]:
    """The text files (Markdown, plain text, CSV, JSON, HTML) at `path`: a file or a folder's."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return [f for f in files if f.suffix.lower() in _TEXT_SUFFIXES and f.is_file()]


def init_project(
    root: Path,
    docs: list[str],
    faq: list[str],
    conversations: list[str],
    questions: list[str],
    name: str = "My organization",
    base_model: str = "default",
    allow: Sequence[str] = (),
) -> Path:
    """Create `root/shoptalk.yaml`; never overwrites an existing one. `allow`: the
    organization's own contacts, kept out of PII redaction (`data.pii.own_contacts`)."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / CONFIG_NAME
    if target.exists():
        raise ConfigError(f"{target} already exists; edit it, or remove it to start over.")
    if base_model != "default":
        resolve_base_model(base_model, root)
    listed = [Path(p).expanduser() for p in [*docs, *faq]]
    cfg = ShoptalkConfig(
        name=name,
        system_prompt=first_system_prompt(name, listed),
        base_model=base_model,
        sources=Sources(
            docs=[relative(p, root) for p in docs],
            faq=[relative(p, root) for p in faq],
            conversations=[relative(p, root) for p in conversations],
            questions=[relative(p, root) for p in questions],
        ),
    )
    cfg.data.pii.allow = list(allow)
    header = (
        "# shoptalk project. Every key, with its type, default and meaning: docs/config.md in\n"
        "# shoptalk's documentation, or run `python -m shoptalk.config.docs`.\n"
    )
    if cfg.data.pii.allow:
        header += (
            "# data.pii.allow: contacts found in several of your files, or published as a line\n"
            "# (toll-free, or a helpline, desk or service), taken for the organization's own\n"
            "# and kept in training and answers; remove any that are personal.\n"
        )
    write_atomic(target, header + dump_config(cfg))
    return target
