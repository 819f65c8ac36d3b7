"""What one stage hands to the next: folders on disk, described by small models.

This module owns every file name and format under `.shoptalk/`; stages name a
file through it, never by spelling it. Writing is atomic everywhere (temp file +
rename), so a crash never leaves a half-written artifact that a later run would
trust.

    .shoptalk/
      datasets/<hash>/      DatasetArtifact: train/val/heldout.jsonl, text.jsonl,
                            preferences.jsonl, manifest.json (written last), report.*,
                            views in sub-folders (cpt/, raft-<key>/)
      runs/<run-id>/        RunArtifact: plan.json, metrics.jsonl, checkpoints/step-N/,
                            final/ (renamed into place when complete), card.json
      evals/<name>/         EvalArtifact: scorecard.json, report.html, answers.json
      index/                the retrieval index: manifest.json (written last) and what
                            rag.store keeps beside it
      exports/<run-id>/     merged models, GGUF, Modelfile
      jobs/<job-id>/        JobArtifact: a fine-tuning job's datasets/, run/ and the
                            checkpoints it keeps as models
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from shoptalk.records import Chunk, Conversation, Preference

# --- folders of a project's state (`.shoptalk/`)
DATASETS_DIR = "datasets"
RUNS_DIR = "runs"
EVALS_DIR = "evals"
INDEX_DIR = "index"
EXPORTS_DIR = "exports"
JOBS_DIR = "jobs"

# --- a dataset folder
SPLITS = ("train", "val", "heldout")
TEXT_FILE = "text.jsonl"
PREFERENCES_FILE = "preferences.jsonl"
MANIFEST_FILE = "manifest.json"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
# The style rules read from the organization's style material (data.style.StyleRules).
STYLE_FILE = "style.json"

# --- a run folder
PLAN_FILE = "plan.json"
METRICS_FILE = "metrics.jsonl"
CARD_FILE = "card.json"
FINAL_DIR = "final"
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step-"
# A checkpoint's trainable weights apart from the optimizer and RNG state, so a reader
# (the jobs worker) can keep them without unpickling training internals.
CHECKPOINT_WEIGHTS = "trainable.pt"
CHECKPOINT_STATE = "state.pt"
RESULTS_CSV = "results.csv"

# --- the retrieval index
INDEX_MANIFEST = "manifest.json"
# The fitted abstention rule (rag/abstain.py), fitted on the project's own questions.
ABSTAIN_RULE = "abstain.json"

# --- an eval folder
SCORECARD_FILE = "scorecard.json"
EVAL_REPORT = "report.html"
ANSWERS_FILE = "answers.json"
COVERAGE_FILE = "coverage.json"
# In .shoptalk/: the mode the last build serves (eval.promote), beside `promoted-run`.
PROMOTED_MODE_FILE = "promoted-mode.json"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner may enter (0700 when created here)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def open_private(path: Path, mode: str = "a"):
    """`path` opened as text, created 0600: prompts, feedback and uploads are nobody else's."""
    return open(path, mode, encoding="utf-8", opener=lambda p, flags: os.open(p, flags, 0o600))


def write_json(path: Path, data: object) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    """A JSON artifact, or None if it is not there (yet)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    write_atomic(path, "".join(r.model_dump_json() + "\n" for r in records))


def read_jsonl(path: Path, model: type[BaseModel]) -> list:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as f:
        return [model.model_validate_json(line) for line in f if line.strip()]


class DatasetArtifact(BaseModel):
    """`.shoptalk/datasets/<hash>/`: train/val conversations, document text, held-out FAQ."""

    path: Path
    hash: str

    @classmethod
    def of_run(cls, datasets: Path, dataset_hash: str) -> DatasetArtifact:
        """The dataset a run card's `dataset_hash` names, in the `datasets` folder.

        A run trained on a view (RAFT's `<hash>-raft-<key>`, CPT's `<hash>-cpt`)
        names the view; its held-out rows, style rules and planted canaries are
        the dataset's, so this is the dataset itself.
        """
        base = dataset_hash.split("-", 1)[0]
        return cls(path=datasets / (base or "none"), hash=base)

    def split_file(self, split: str) -> Path:
        return self.path / f"{split}.jsonl"

    @property
    def text_file(self) -> Path:
        return self.path / TEXT_FILE

    @property
    def preferences_file(self) -> Path:
        return self.path / PREFERENCES_FILE

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def style_file(self) -> Path:
        """The style rules read from the style material (data.style.StyleRules as JSON)."""
        return self.path / STYLE_FILE

    def style(self) -> dict:
        return read_json(self.style_file) or {}

    @property
    def complete(self) -> bool:
        """The manifest is written last: its presence marks a complete dataset."""
        return self.manifest_file.is_file()

    def conversations(self, split: str) -> list[Conversation]:
        return read_jsonl(self.split_file(split), Conversation)

    def texts(self) -> list[Chunk]:
        return read_jsonl(self.text_file, Chunk)

    def preferences(self) -> list[Preference]:
        return read_jsonl(self.preferences_file, Preference)

    def manifest(self) -> dict:
        return read_json(self.manifest_file) or {}

    def write(
        self,
        splits: dict[str, list[Conversation]],
        texts: list[Chunk],
        preferences: list[Preference],
        manifest: dict,
        style: dict | None = None,
    ) -> DatasetArtifact:
        """Write every file of the dataset, the manifest last."""
        for split, conversations in splits.items():
            write_jsonl(self.split_file(split), conversations)
        write_jsonl(self.text_file, texts)
        write_jsonl(self.preferences_file, preferences)
        write_json(self.style_file, style or {})
        write_json(self.manifest_file, manifest)
        return self

    def view_files(self) -> list[Path]:
        """The files a view of this dataset copies: all but the training split and manifest."""
        names = [self.split_file(s).name for s in SPLITS if s != "train"]
        return [self.path / n for n in [*names, TEXT_FILE, PREFERENCES_FILE, STYLE_FILE]]


class RunArtifact(BaseModel):
    """`.shoptalk/runs/<run-id>/`: the plan, metrics, checkpoints, the model in `final/`, its card."""

    path: Path
    run_id: str

    @classmethod
    def at(cls, path: Path) -> RunArtifact:
        return cls(path=path, run_id=path.name)

    @property
    def final(self) -> Path:
        return self.path / FINAL_DIR

    @property
    def done(self) -> bool:
        """`final/` is renamed into place only when complete, so its presence means done."""
        return self.final.is_dir()

    @property
    def is_adapter(self) -> bool:
        return (self.final / "adapter_config.json").is_file()

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def card_file(self) -> Path:
        return self.path / CARD_FILE

    @property
    def plan_file(self) -> Path:
        return self.path / PLAN_FILE

    def metrics(self) -> list[dict]:
        return read_metrics(self.metrics_file)

    def card(self) -> dict:
        return read_json(self.card_file) or {}

    def write_card(self, card: dict) -> None:
        write_json(self.card_file, card)

    def plan(self) -> dict | None:
        return read_json(self.plan_file)

    def write_plan(self, plan: dict) -> None:
        write_json(self.plan_file, plan)

    def seconds_left(self, metrics: list[dict] | None = None) -> float | None:
        """Training time left: the plan's steps to go at the recent steps' pace."""
        metrics = self.metrics() if metrics is None else metrics
        total = (self.plan() or {}).get("total_steps")
        if not metrics or not total:
            return None
        recent = metrics[-5:]
        per_step = sum(m["tokens"] / max(m["tokens_per_s"], 1e-9) for m in recent) / len(recent)
        return max(0.0, (total - metrics[-1]["step"]) * per_step)

    def checkpoint_folders(self) -> list[Path]:
        """Complete checkpoints, oldest first (a half-written one has a temporary name)."""
        found = self.checkpoints.glob(f"{CHECKPOINT_PREFIX}*")
        return sorted(p for p in found if (p / CHECKPOINT_STATE).is_file())


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.removeprefix(CHECKPOINT_PREFIX))


def read_metrics(path: Path) -> list[dict]:
    """The records of a `metrics.jsonl`, one per step (with `val_loss` at evaluations).

    A line being appended while we read is not yet a record: it is skipped.
    """
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def keep_metrics_until(path: Path, step: int) -> None:
    """After a resume, drop the records written after the checkpoint we restarted from.

    Rewritten atomically: a crash here leaves the old file, never a truncated one.
    """
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


class MetricsLog:
    """Appends one record per line to `metrics.jsonl`, flushed at once for readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None

    def __enter__(self) -> MetricsLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.file.close()

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


def write_results_csv(run: RunArtifact) -> Path:
    """The metrics as OpenAI's fine-tuning result file (step, train_loss, valid_loss, ...)."""
    columns = ["step", "train_loss", "valid_loss", "lr", "tokens"]
    lines = [",".join(columns)]
    for r in run.metrics():
        row = [r.get("step"), r.get("loss"), r.get("val_loss"), r.get("lr"), r.get("tokens")]
        lines.append(",".join("" if v is None else str(v) for v in row))
    path = run.path / RESULTS_CSV
    write_atomic(path, "\n".join(lines) + "\n")
    return path


class EvalArtifact(BaseModel):
    """`.shoptalk/evals/<name>/`: a scorecard, its HTML report and every answer."""

    path: Path

    @property
    def scorecard(self) -> Path:
        return self.path / SCORECARD_FILE

    @property
    def report(self) -> Path:
        return self.path / EVAL_REPORT

    @property
    def answers(self) -> Path:
        return self.path / ANSWERS_FILE

    @property
    def coverage(self) -> Path:
        """Which facts of the documents and FAQ the tuned model recalls (eval/coverage.py)."""
        return self.path / COVERAGE_FILE


class JobArtifact(BaseModel):
    """`.shoptalk/jobs/<job-id>/`: a fine-tuning job's datasets, its run, its kept checkpoints."""

    path: Path

    @property
    def datasets(self) -> Path:
        return self.path / DATASETS_DIR

    @property
    def run(self) -> RunArtifact:
        return RunArtifact(path=self.path / "run", run_id="run")

    def kept_checkpoint(self, step: int) -> Path:
        """Where a checkpoint's weights are kept as a model once training pruned it."""
        return self.path / CHECKPOINTS_DIR / f"{CHECKPOINT_PREFIX}{step}"


class PromotedMode(BaseModel):
    """`.shoptalk/promoted-mode.json`: what the API's default model answers with."""

    mode: Literal["base", "base+rag", "tuned", "tuned+rag"]
    # The promoted run (`promoted-run`) the mode goes with: the tuned run for the tuned
    # modes; for the base modes the one promoted before, if any. Another one: stale.
    run_id: str | None = None
    reason: str = ""

    @property
    def rag(self) -> bool:
        return self.mode.endswith("+rag")

    def write(self, state: Path) -> None:
        write_json(state / PROMOTED_MODE_FILE, self.model_dump(mode="json"))

    @staticmethod
    def clear(state: Path) -> None:
        """A build that chose no mode (no scorecard): the promoted run answers as it is."""
        (state / PROMOTED_MODE_FILE).unlink(missing_ok=True)

    @classmethod
    def read(cls, state: Path) -> PromotedMode | None:
        """The promoted mode, or None (no build chose one yet, or an unreadable file)."""
        data = read_json(state / PROMOTED_MODE_FILE)
        try:
            return cls.model_validate(data) if data else None
        except ValueError:
            return None
