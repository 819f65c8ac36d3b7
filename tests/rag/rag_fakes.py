"""A stand-in for a sentence-transformers model and a small project with documents.

The stand-in embeds a text as its hashed words (texts sharing words are
similar) and records every text it embeds, so tests can count embeddings.
"""

from __future__ import annotations

import csv
import re
import zlib
from pathlib import Path

import numpy as np
import yaml

from shoptalk.modeling.embed import Embedder
from shoptalk.rag.bm25 import terms

_TOKEN = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9]+|[^\sA-Za-z0-9]")


class HashingModel:
    def __init__(self, dims: int = 512) -> None:
        self.dims = dims
        self.embedded: list[str] = []

    def tokenizer(self, texts: list[str], add_special_tokens: bool = False) -> dict:
        return {"input_ids": [_TOKEN.findall(text) for text in texts]}

    def encode(self, texts: list[str], batch_size: int, **_: object) -> np.ndarray:
        self.embedded += texts
        vectors = np.zeros((len(texts), self.dims), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in terms(text):
                vectors[row, zlib.crc32(word.encode()) % self.dims] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)

    def get_embedding_dimension(self) -> int:
        return self.dims


def fake_embedder() -> Embedder:
    return Embedder("fake", "fake", batch_size=4, model=HashingModel())


HANDBOOK = """# Handbook

## Claims

Customers have 47 days from delivery to file a freight claim. Claims are filed in the portal.
Dr. Ana Ruiz reviews claims over $5,000 at 9 a.m. every Monday.

## Depots

Ingrid Solberg runs the Oslo depot. The depot opens at 06:00.
"""
PAY = """# Pay

## Payroll

Salaries are paid on the 25th of each month. Overtime is paid at 1.5 times the hourly rate.
"""
LEGAL = """---
groups: [legal]
---
# Litigation

## Open cases

The Harbor Freight dispute settles for $80,000 in March.
"""
CHINESE = """# 退货政策

## 退货期限

退货期限是75天。请在期限内提交申请！客服会在两个工作日内回复。
"""


def write_rag_project(root: Path, **rag: object) -> Path:
    (root / "docs" / "hr").mkdir(parents=True, exist_ok=True)
    (root / "docs" / "handbook.md").write_text(HANDBOOK, encoding="utf-8")
    (root / "docs" / "hr" / "pay.md").write_text(PAY, encoding="utf-8")
    (root / "docs" / "legal.md").write_text(LEGAL, encoding="utf-8")
    (root / "docs" / "returns_zh.md").write_text(CHINESE, encoding="utf-8")
    config = {
        "name": "Kestrel",
        "sources": {"docs": ["docs"]},
        "rag": {"access": {"docs/hr/*": ["hr"]}, "min_similarity": 0.1} | rag,
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


# FAQ rows whose answers the documents above also state, and one only the FAQ holds.
FAQ_ROWS = [
    ("How long do customers have to file a claim?", "Customers have 47 days to file a claim."),
    ("Who looks at the big claims?", "Dr. Ana Ruiz reviews claims over $5,000 on Mondays."),
    ("Who is in charge of the Oslo depot?", "Ingrid Solberg runs the Oslo depot."),
    ("When can I get into the depot?", "The depot opens at 06:00."),
    ("When do we get paid?", "Salaries are paid on the 25th of each month."),
    ("How is overtime paid?", "Overtime is paid at 1.5 times the hourly rate."),
    ("退货要在多少天内申请？", "退货期限是75天。"),
    ("What is the office wifi password?", "The guest wifi password is on the kitchen door."),
]


def write_faq_project(root: Path, rows=FAQ_ROWS, questions: str | None = None) -> Path:
    """`write_rag_project` with a FAQ (`rows`) and, if given, an evaluation question file."""
    write_rag_project(root)
    with (root / "faq.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(rows)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    config["sources"]["faq"] = ["faq.csv"]
    if questions is not None:
        (root / "questions.jsonl").write_text(questions, encoding="utf-8")
        config["sources"]["questions"] = ["questions.jsonl"]
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root
