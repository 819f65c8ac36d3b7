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
from shoptalk.config import DataSettings, ShoptalkConfig
from shoptalk.data import augment
from shoptalk.data.clean import clean_chunks, clean_conversations
from shoptalk.data.dedupe import dedupe, leakage_free_split
from shoptalk.data.ingest import Ingested, ingest
from shoptalk.data.pii import redact, redact_conversation
from shoptalk.errors import SourceError
from shoptalk.records import Chunk, Conversation

CHINESE_REFUSAL = "抱歉，我们的资料中没有这方面的信息。"
DATASET_FORMAT = 2


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
    errors: list[SourceError] | None = [] if cfg.data.on_error == "skip" else None
    sources = ingest(root, cfg.sources.docs, cfg.sources.faq, cfg.sources.conversations, errors)
    sources, report = prepare_sources(sources, cfg.data)
    report["skipped"] = [str(e) for e in errors or []]
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
        **report,
    }
    # The manifest is written last: its presence marks a complete dataset.
    write_json(target / "manifest.json", manifest)
    return DatasetArtifact(path=target, hash=digest)


def prepare_sources(sources: Ingested, settings: DataSettings) -> tuple[Ingested, dict]:
    """Clean, redact and deduplicate the ingested records; report what changed and why.

    The report holds counts, reasons and record ids, never a redacted value.
    """
    faq, dropped = clean_conversations(sources.faq, settings.clean)
    chats, dropped_chats = clean_conversations(sources.conversations, settings.clean)
    chunks, dropped_chunks = clean_chunks(sources.chunks, settings.clean)
    pii: Counter[str] = Counter()
    if settings.redact_pii:
        faq, chats = redact_all(faq, settings, pii), redact_all(chats, settings, pii)
        chunks = [redact_chunk(c, settings, pii) for c in chunks]
    faq, faq_clusters = dedupe(faq, settings.dedupe)
    chats, chat_clusters = dedupe(chats, settings.dedupe)
    kept = sources.model_copy(update={"faq": faq, "conversations": chats, "chunks": chunks})
    report = {
        "dropped": [d.model_dump() for d in dropped + dropped_chats + dropped_chunks],
        "pii_redacted": dict(pii),
        "duplicates": [c.model_dump() for c in faq_clusters + chat_clusters],
    }
    return kept, report


def redact_all(
    records: list[Conversation], settings: DataSettings, counts: Counter[str]
) -> list[Conversation]:
    out = []
    for record in records:
        redacted, found = redact_conversation(record, settings.pii)
        counts.update(found)
        out.append(redacted)
    return out


def redact_chunk(chunk: Chunk, settings: DataSettings, counts: Counter[str]) -> Chunk:
    result = redact(chunk.text, settings.pii)
    counts.update(result.counts)
    return chunk.model_copy(update={"text": result.text}) if result.counts else chunk


def assemble(
    cfg: ShoptalkConfig, sources: Ingested
) -> tuple[list[Conversation], list[Conversation], list[Conversation]]:
    settings = cfg.data
    faq = list(sources.faq)
    heldout: list[Conversation] = []
    if not cfg.sources.questions and settings.holdout_ratio > 0 and len(faq) >= 5:
        # Near-duplicate FAQ rows land on the same side, so no held-out
        # question is a copy of a trained one.
        ratios = {"train": 1 - settings.holdout_ratio, "heldout": settings.holdout_ratio}
        parts = leakage_free_split(faq, ratios, settings.seed, settings.dedupe)
        faq, heldout = parts["train"], parts["heldout"]
    train = augment.faq_examples(faq, settings.question_variants, settings.seed)
    train += sources.conversations
    if settings.document_qa:
        train += augment.document_examples(sources.chunks)
    if settings.refusals:
        chinese = is_mostly_chinese(sources)
        answer = settings.refusal_answer
        if chinese and answer == type(settings).model_fields["refusal_answer"].default:
            answer = CHINESE_REFUSAL
        known = " ".join(c.text for c in sources.chunks) + " ".join(
            m.content for c in faq for m in c.messages
        )
        n_refusals = max(4, len(train) // 12)
        train += augment.refusal_examples(answer, chinese, settings.seed, n_refusals, known)
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
