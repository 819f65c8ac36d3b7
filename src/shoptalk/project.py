"""Where a project's files live. Everything shoptalk writes is under `.shoptalk/`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from shoptalk.artifacts import (
    DATASETS_DIR,
    EVALS_DIR,
    EXPORTS_DIR,
    INDEX_DIR,
    JOBS_DIR,
    RUNS_DIR,
    EvalArtifact,
    JobArtifact,
    RunArtifact,
    write_atomic,
)
from shoptalk.config import ShoptalkConfig, load_config
from shoptalk.errors import ShoptalkError


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
