"""A build whose output goes to a file: every phase leaves count, rate and ETA lines in it,
the corrected training estimate, and a scorecard table with all its columns on one line;
and no loop of a build runs without a phase name (a loop without one is silent however
long it takes on a real model)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import yaml

from shoptalk import pipeline, progress
from shoptalk.project import Project

from projects import write_project

# Each phase of a build on the tiny project, as its progress lines name it.
PHASES = [
    "reading documents",  # the dataset stage
    "index: reading documents",
    "index: embedding chunks",
    "sft: training",
    "eval: retrieving for domain",
    "eval: base answers",
    "eval: tuned answers",
    "eval: coverage answers",
    "eval: retention answers (base)",
    "eval: retention likelihoods (base)",
    "eval: retention likelihoods (tuned)",
]
COUNT_RATE = r"\d+/\d+, [\d,.]+/s, "


def test_a_build_logged_to_a_file_shows_progress_of_every_phase(tmp_path, tiny_model):
    project = write_project(tmp_path / "p", tiny_model)
    config = yaml.safe_load((project / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["eval"]["retention"] = True
    (project / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    # Every phase of a tiny build is short: a line at every step instead of every 10 s.
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["SHOPTALK_PROGRESS_SECONDS"] = "0"
    log_file = tmp_path / "build.log"
    with log_file.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "shoptalk.cli", "build", str(project)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=600,
        )
    text = log_file.read_text(encoding="utf-8")
    assert done.returncode == 0, text[-3000:]
    lines = text.splitlines()

    for phase in PHASES:
        pattern = re.compile(rf"^{re.escape(phase)}: {COUNT_RATE}(ETA|in) \d+:\d\d")
        assert any(pattern.match(line) for line in lines), f"no progress line for {phase!r}"
    for phase in ("sft: training", "eval: base answers", "eval: retention answers (base)"):
        eta = re.compile(rf"^{re.escape(phase)}: {COUNT_RATE}ETA \d+:\d\d")
        assert any(eta.match(line) for line in lines), f"no ETA while {phase!r} ran"
    assert re.search(r"^sft: training: \d+/\d+, .*, loss \d+\.\d+, \d+ tok/s$", text, re.M)
    assert re.search(r"^time +~.+ left \(steps 2-4 took .+ s each; the plan estimated", text, re.M)

    header = next(line for line in lines if "suite" in line and "metric" in line)
    assert "tuned" in header and "change [95% CI]" in header, header
    rows = [line for line in lines if "key_fact_recall" in line]
    assert rows and all(
        re.search(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", r) for r in rows
    )

    logged = (project / ".shoptalk" / "logs" / "shoptalk.log").read_text(encoding="utf-8")
    assert re.search(rf"shoptalk.progress: eval: tuned answers: {COUNT_RATE}", logged)
    assert "steps 2-4 took" in logged


def test_every_loop_a_build_runs_reports_under_a_phase_name(
    tmp_path, tiny_model, monkeypatch, one_thread
):
    # Every optional stage with a loop of its own: DPO (its reference log-probs), canaries,
    # RAFT's retrieval per question.
    root = write_project(tmp_path / "p", tiny_model, epochs=1)
    pairs = [
        {"prompt": "What is the claim window?", "chosen": "47 days.", "rejected": "No idea."},
        {"prompt": "Who runs the Oslo depot?", "chosen": "Ingrid Solberg.", "rejected": "Hi!"},
    ]
    (root / "prefs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["sources"]["preferences"] = ["prefs.jsonl"]
    config["train"]["dpo"] = {"learning_rate": 1e-2, "epochs": 1}
    config["data"]["canaries"] = 2
    config["rag"] = {"raft": {}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    phases: list[str | None] = []
    real = progress.track

    def named(items, phase, *args, **kwargs):
        phases.append(phase)
        return real(items, phase, *args, **kwargs)

    monkeypatch.setattr(progress, "track", named)
    events: list[pipeline.Event] = []
    pipeline.build(Project.open(root), on_event=events.append)

    assert {e.stage for e in events} >= {"dpo", "eval"}
    assert phases and None not in phases, phases
    assert {
        "dpo: reference log-probs",
        "eval: coverage answers",
        "eval: canary answers",
        "eval: canary likelihoods",
        "input: selecting RAFT passages",
    } <= set(phases)
