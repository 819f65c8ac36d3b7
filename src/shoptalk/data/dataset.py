"""The dataset stage: sources -> a content-addressed training set on disk.

    .shoptalk/datasets/<hash>/
        train.jsonl     conversations to train on (FAQ, variants, chats, document QA, refusals)
        val.jsonl       held-back question variants: validation loss on unseen wordings
        text.jsonl      document sections, trained on as plain text
        heldout.jsonl   FAQ rows kept out of training for the scorecard (only without question files)
        manifest.json   counts, settings and the hash

The hash covers the sources' bytes and every setting that changes the output,
so an unchanged project reuses the folder and any change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from shoptalk.artifacts import DatasetArtifact, write_json, write_jsonl
from shoptalk.config import ShoptalkConfig
from shoptalk.data import augment
from shoptalk.data.ingest import Ingested, ingest
from shoptalk.records import Conversation

CHINESE_REFUSAL = "抱歉，我们的资料中没有这方面的信息。"
DATASET_FORMAT = 1


def source_files(root: Path, entries: list[str]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        path = (root / entry) if not Path(entry).is_absolute() else Path(entry)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(x.startswith(".") for x in p.parts)
            )
        elif path.exists():
            files.append(path)
    return files


def dataset_hash(cfg: ShoptalkConfig, root: Path) -> str:
    h = hashlib.sha256()
    h.update(f"format={DATASET_FORMAT}".encode())
    h.update(cfg.data.model_dump_json().encode())
    h.update(json.dumps(bool(cfg.sources.questions)).encode())
    for group in (cfg.sources.docs, cfg.sources.faq, cfg.sources.conversations):
        for path in source_files(root, group):
            h.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def build_dataset(cfg: ShoptalkConfig, root: Path, out_root: Path) -> DatasetArtifact:
    """Build (or reuse) the dataset for the project at `root` under `out_root/<hash>`."""
    digest = dataset_hash(cfg, root)
    target = out_root / digest
    if (target / "manifest.json").is_file():
        return DatasetArtifact(path=target, hash=digest)
    sources = ingest(root, cfg.sources.docs, cfg.sources.faq, cfg.sources.conversations)
    train, val, heldout = assemble(cfg, sources)
    target.mkdir(parents=True, exist_ok=True)
    write_jsonl(target / "train.jsonl", train)
    write_jsonl(target / "val.jsonl", val)
    write_jsonl(target / "text.jsonl", sources.chunks if cfg.data.document_text else [])
    write_jsonl(target / "heldout.jsonl", heldout)
    manifest = {
        "hash": digest,
        "settings": cfg.data.model_dump(),
        "counts": {
            "train": dict(Counter(c.kind for c in train)),
            "val": len(val),
            "text_chunks": len(sources.chunks) if cfg.data.document_text else 0,
            "heldout": len(heldout),
            "preferences": len(sources.preferences),
        },
    }
    # The manifest is written last: its presence marks a complete dataset.
    write_json(target / "manifest.json", manifest)
    return DatasetArtifact(path=target, hash=digest)


def assemble(
    cfg: ShoptalkConfig, sources: Ingested
) -> tuple[list[Conversation], list[Conversation], list[Conversation]]:
    settings = cfg.data
    rng = random.Random(settings.seed)
    faq = list(sources.faq)
    heldout: list[Conversation] = []
    if not cfg.sources.questions and settings.holdout_ratio > 0 and len(faq) >= 5:
        rng.shuffle(faq)
        n_held = max(1, round(len(faq) * settings.holdout_ratio))
        heldout, faq = (
            sorted(faq[:n_held], key=lambda c: c.source),
            sorted(faq[n_held:], key=lambda c: c.source),
        )
    train = augment.faq_examples(faq, settings.question_variants, settings.seed)
    train += sources.conversations
    if settings.document_qa:
        train += augment.document_examples(sources.chunks)
    if settings.refusals:
        chinese = is_mostly_chinese(sources)
        answer = settings.refusal_answer
        if chinese and answer == type(settings).model_fields["refusal_answer"].default:
            answer = CHINESE_REFUSAL
        n_refusals = max(4, len(train) // 12)
        train += augment.refusal_examples(answer, chinese, settings.seed, n_refusals)
    train = list({c.id: c for c in train}.values())
    variants = [c for c in train if c.kind == "paraphrase"]
    n_val = round(len(variants) * settings.validation_ratio)
    val_ids = {c.id for c in random.Random(settings.seed + 1).sample(variants, n_val)}
    val = [c for c in train if c.id in val_ids]
    train = [c for c in train if c.id not in val_ids]
    return train, val, heldout


def is_mostly_chinese(sources: Ingested) -> bool:
    sample = " ".join(c.messages[0].content for c in sources.faq[:50]) + " ".join(
        c.text[:200] for c in sources.chunks[:20]
    )
    return augment.is_chinese(sample)
