"""Tiny projects written by tests: a few documents, FAQ rows, chats and questions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

FAQ = [
    ("What is the claim window?", "The claim window is 47 days from delivery."),
    ("Who runs the Oslo depot?", "Ingrid Solberg runs the Oslo depot."),
    ("Which tier covers cold freight?", "Cold freight ships on tier KX-450."),
    ("How much is the pallet fee?", "The pallet fee is $18 per pallet."),
    ("When does support open?", "Support opens at 7:30 every weekday."),
    ("Where do I send claims?", "Send claims to claims@kestrel.example."),
]
DOC = """# Warehouse handbook

## Safety

Forklift drivers renew their licence every 18 months.

## Storage

| Zone | Temperature |
| --- | --- |
| Cold room | 4 °C |
"""


def write_project(root: Path, base_model: Path, **train: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "handbook.md").write_text(DOC, encoding="utf-8")
    with (root / "faq.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(FAQ)
    chats = [
        {
            "messages": [
                {"role": "user", "content": "Who are you?"},
                {"role": "assistant", "content": "I am Kestrel Assist."},
            ]
        }
    ]
    (root / "chats.jsonl").write_text(
        "".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8"
    )
    (root / "questions").mkdir(exist_ok=True)
    questions = [
        {
            "question": "How long is the claim window?",
            "answer": "The claim window is 47 days from delivery.",
            "must_include": ["47 days"],
        },
        {
            "question": "Who manages the Oslo depot?",
            "answer": "Ingrid Solberg runs the Oslo depot.",
            "must_include": ["Ingrid Solberg"],
        },
    ]
    (root / "questions" / "domain.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8"
    )
    (root / "questions" / "unanswerable.jsonl").write_text(
        json.dumps({"question": "What is the CEO's salary?", "expect": "refusal"}) + "\n",
        encoding="utf-8",
    )
    settings = {
        "epochs": 2,
        "learning_rate": 1e-2,
        "max_seq_len": 128,
        "tokens_per_step": 256,
        "checkpoint_every": 2,
        "method": "lora",
        "lora": {"r": 4, "alpha": 8},
    } | train
    config = {
        "name": "Kestrel",
        "system_prompt": "You are Kestrel Assist.",
        "base_model": str(base_model),
        "sources": {
            "docs": ["docs"],
            "faq": ["faq.csv"],
            "conversations": ["chats.jsonl"],
            "questions": ["questions/domain.jsonl", "questions/unanswerable.jsonl"],
        },
        # Self-replay (on by default) has the base model answer general prompts; a tiny
        # random model never ends a reply, so none would be kept (tests/data/test_replay.py
        # tests self-replay on a taught tiny model).
        "data": {"question_variants": 2, "replay": {"ratio": 0.0}},
        "train": settings,
        # A tiny random model shows no real gain: the default gate's domain rule would
        # fail every test build (tests/eval/test_gate_defaults.py tests that rule).
        "eval": {
            "max_new_tokens": 8,
            "batch_size": 4,
            "retention": False,
            "gate": {"defaults": {"domain_gain": False}},
        },
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root


def write_ops_project(root: Path, base_model: Path, **serve: object) -> Path:
    """`write_project` with its documents restricted to the `ops` group, indexed, the job
    worker off (and `serve` settings added): what the serving tests of permissions read."""
    from shoptalk.pipeline import index_documents
    from shoptalk.project import Project

    write_project(root, base_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["rag"] = {"access": {"docs/*": ["ops"]}}
    config["serve"] = {"worker": False, **serve}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    index_documents(Project.open(root))
    return root
