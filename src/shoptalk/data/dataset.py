"""The dataset stage: sources -> a content-addressed training set on disk.

    .shoptalk/datasets/<hash>/
        train.jsonl     conversations to train on (FAQ, variants, chats, document QA, refusals,
                        replay)
        val.jsonl       held-back question variants: validation loss on unseen wordings
        text.jsonl      document sections, trained on as plain text
        preferences.jsonl  preference pairs for DPO (sources.preferences, LLaMA-Factory ranking)
        heldout.jsonl   FAQ rows kept out of training for the scorecard (only without question files)
        manifest.json   counts, settings, the hash; what was dropped, merged, redacted, skipped

The hash covers the sources' bytes and every setting that changes the output,
so an unchanged project reuses the folder and any change makes a new one.

With `redact_pii` on (the default) nothing written here holds a value that
redaction finds: records (replay included) are redacted before they are split,
and source errors, which may quote a cell, a key or a role name, are redacted
before they are stored in the manifest (always, whatever `redact_pii` says).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from pathlib import Path

from shoptalk.artifacts import DatasetArtifact
from shoptalk.config import DEFAULT_REPLAY_FILES, DataSettings, ReplaySettings, ShoptalkConfig
from shoptalk.data import augment, synth
from shoptalk.data.canaries import CANARIES_FILE, plant_canaries, write_canaries
from shoptalk.data.clean import (
    CJK_PUNCTUATION,
    Dropped,
    clean_chunks,
    clean_conversations,
    source_file,
)
from shoptalk.data.dedupe import dedupe, leakage_free_split
from shoptalk.data.documents import source_path
from shoptalk.data.feedback import (
    feedback_conversations,
    feedback_path,
    read_feedback,
    trainable_feedback,
)
from shoptalk.data.pii import redact, redact_conversation
from shoptalk.data.preferences import preferences_from_feedback, prepare_preferences
from shoptalk.data.replay import (
    SELF_ANSWER_FORMAT,
    SELF_ANSWER_TOKENS,
    builtin_entries,
    builtin_file,
    read_replay,
    replay_count,
    sample_replay,
    self_answer_pool,
)
from shoptalk.data.sources import Ingested, may_read, read_sources, source_groups
from shoptalk.data.style import StyleRules, drafting_examples, rules_from
from shoptalk.errors import SourceError
from shoptalk.records import Chunk, Conversation
from shoptalk.text import is_chinese

logger = logging.getLogger(__name__)
# Drafting requests made from FAQ rows when the project has style rules (data.style).
DRAFTING_EXAMPLES = 40

CHINESE_REFUSAL = "抱歉，我们的资料中没有这方面的信息。"
DATASET_FORMAT = 2
# Settings added after the first datasets were built. At their defaults they are
# left out of the hash, so a project that does not use them keeps its dataset
# (and its trained run) across an upgrade.
LATER_SETTINGS = ("split_by", "replay", "synth", "canaries")
SHEET_LABEL = re.compile(r"\[[^\]]*\]$")


def source_files(root: Path, entries: list[str]) -> list[Path]:
    files: list[Path] = []
    for entry in entries:
        path = (root / entry) if not Path(entry).is_absolute() else Path(entry)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(x.startswith(".") for x in p.relative_to(path).parts)
            )
        elif path.exists():
            files.append(path)
    return files


def dataset_hash(cfg: ShoptalkConfig, root: Path) -> str:
    h = hashlib.sha256()
    h.update(f"format={DATASET_FORMAT}".encode())
    h.update(settings_key(cfg.data).encode())
    h.update(json.dumps(bool(cfg.sources.questions)).encode())
    groups = [cfg.sources.docs, cfg.sources.faq, cfg.sources.conversations]
    if cfg.sources.preferences:
        groups.append(cfg.sources.preferences)
    if cfg.sources.style:  # only when declared: projects without style material keep their hash
        groups.append(cfg.sources.style)
    if cfg.data.replay.ratio > 0:
        groups.append(cfg.data.replay.files)
    for entry in builtin_entries(cfg.data.replay):
        # The base model's answers to the bundled prompts: what they depend on.
        h.update(hashlib.sha256(builtin_file(entry).read_bytes()).digest())
        answers = [cfg.base_model, cfg.system_prompt, cfg.train.device, SELF_ANSWER_TOKENS]
        h.update(json.dumps([entry, SELF_ANSWER_FORMAT, *answers]).encode())
    kept_punctuation = False
    for group in groups:
        for path in source_files(root, group):
            data = path.read_bytes()
            h.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
            h.update(hashlib.sha256(data).digest())
            kept_punctuation |= cfg.data.clean.nfkc and holds_cjk_punctuation(data)
    if kept_punctuation:
        # Since full-width punctuation stays in Chinese text (it became ASCII before),
        # a dataset of such sources is not the one built before: a new hash. Other
        # projects keep theirs.
        h.update(b"cjk-punctuation-kept")
    if feedback_path(root).is_file():
        h.update(hashlib.sha256(feedback_path(root).read_bytes()).digest())
        _, held_back = trainable_feedback(read_feedback(feedback_path(root)), cfg.train.groups)
        if held_back:
            # Only when a rating is left out: which ones depends on train.groups.
            groups = sorted(cfg.train.groups)
            h.update(json.dumps({"groups": groups, "withheld_feedback": held_back}).encode())
    withheld = withheld_files(cfg, root)
    if withheld:
        # Only when a file is left out: a project without restricted documents keeps its hash.
        names = sorted(source_path(p, root) for p in withheld)
        h.update(json.dumps({"groups": sorted(cfg.train.groups), "withheld": names}).encode())
    return h.hexdigest()[:16]


def withheld_files(cfg: ShoptalkConfig, root: Path) -> frozenset[Path]:
    """The documents, FAQ and chat files (resolved) `train.groups` may not read: left out
    of training.

    A file whose groups cannot be told (a broken front matter) is not listed: its
    reader stops the build with the file and line, or with `data.on_error: skip`
    leaves it out and lists it among the skipped sources.
    """
    withheld = set()
    for entries in (cfg.sources.docs, cfg.sources.faq, cfg.sources.conversations):
        for path in source_files(root, entries):
            try:
                groups = source_groups(path, root, cfg.rag)
            except SourceError:
                continue
            if not may_read(groups, cfg.train.groups):
                withheld.add(path.resolve())
    return frozenset(withheld)


def holds_cjk_punctuation(data: bytes) -> bool:
    """Whether a source file's bytes (UTF-8 or GB18030 text) hold punctuation `clean` keeps."""
    return any(
        mark.encode(encoding) in data
        for mark in CJK_PUNCTUATION
        for encoding in ("utf-8", "gb18030")
    )


def settings_key(settings: DataSettings) -> str:
    """The settings as hashed: those in LATER_SETTINGS only once they differ from the default."""
    fields = type(settings).model_fields
    at_default = {
        name
        for name in LATER_SETTINGS
        if getattr(settings, name) == fields[name].get_default(call_default_factory=True)
    }
    if replay_off_as_before(settings.replay):
        at_default.add("replay")
    return settings.model_dump_json(exclude=at_default)


def replay_off_as_before(replay: ReplaySettings) -> bool:
    """Replay turned off (`ratio: 0`) as it was by default before self-replay became the
    default: such a project keeps the dataset (and run) it had before that change."""
    return replay.ratio == 0 and replay.seed == 0 and replay.files in ([], DEFAULT_REPLAY_FILES)


def build_dataset(
    cfg: ShoptalkConfig, root: Path, out_root: Path, base_path: str | None = None
) -> DatasetArtifact:
    """Build (or reuse) the dataset for the project at `root` under `out_root/<hash>`.

    `base_path`: the resolved base model, which answers the built-in replay
    prompts (`data.replay.files: [builtin:general]`); resolved here when not given.
    """
    digest = dataset_hash(cfg, root)
    target = out_root / digest
    if DatasetArtifact(path=target, hash=digest).complete:
        return DatasetArtifact(path=target, hash=digest)
    settings = cfg.data
    errors: list[SourceError] | None = [] if settings.on_error == "skip" else None
    # Question files are read too, though not trained on: a broken one stops (or is
    # listed by) the build here, before hours of training, not at the eval stage.
    withheld = withheld_files(cfg, root)
    sources = read_sources(root, cfg.sources, errors, withheld)
    # Ratings are trained like restricted documents: only what train.groups may read.
    feedback, withheld_feedback = trainable_feedback(
        read_feedback(feedback_path(root)), cfg.train.groups
    )
    sources.conversations += feedback_conversations(feedback)
    sources.preferences += preferences_from_feedback(feedback)
    pool = read_replay(root, settings.replay, errors) if settings.replay.ratio > 0 else []
    sources, pool, report = prepare_sources(sources, settings, pool)
    # An error message may quote a cell, a key or a role name: it is stored redacted.
    report["skipped"] = [redact(str(e), settings.pii).text for e in errors or []]
    synthesized, synth_report = synthesize(cfg, sources, out_root.parent / "cache" / "synth")
    if synth_report:
        report["synth"] = synth_report
        # The teacher's words are records like the sources': it read redacted text, but it
        # may write a value redaction finds (from its own knowledge), or a pair twice.
        synthesized = prepared(synthesized, settings, report)
    style, style_files = rules_from(sources.style, sources.chunks)
    train, val, heldout, split = assemble(cfg, sources, synthesized, style)
    if builtin_entries(settings.replay):
        # Answered with the system prompt training puts before a general request: the
        # config's (the style rules are for drafts only: modeling.chat_format.for_request).
        wanted = replay_count(len(train), settings.replay.ratio)
        own = self_answers(cfg, root, base_path, cfg.system_prompt, wanted)
        pool += prepared(own, settings, report)
    in_train = {c.id for c in train}
    replay = sample_replay([c for c in pool if c.id not in in_train], len(train), settings.replay)
    train += replay
    target.mkdir(parents=True, exist_ok=True)
    planted, canaries = plant_canaries(train, settings.canaries, settings.seed)
    if settings.redact_pii:
        # Planted after redaction ran, so redacted here: a canary is a secret
        # like any other, and with redaction on no model is trained on one.
        planted = [
            p if p is t else redact_conversation(p, settings.pii)[0]
            for p, t in zip(planted, train, strict=True)
        ]
    train = planted
    if canaries:
        write_canaries(target / CANARIES_FILE, canaries)
    texts = sources.chunks if settings.document_text else []
    manifest = {
        "hash": digest,
        "settings": settings.model_dump(),
        "counts": {
            "train": dict(Counter(c.kind for c in train)),
            "val": len(val),
            "text_chunks": len(sources.chunks) if settings.document_text else 0,
            "heldout": len(heldout),
            "preferences": len(sources.preferences),
            "replay": len(replay),
            "canaries": len(canaries),
        },
        "split": split,
        "style": {"files": style_files, "rules": style.model_dump(exclude={"sources"})},
        # What the model may reveal: trained on what these groups may read (train.groups).
        "groups": cfg.train.groups,
        "withheld": sorted(source_path(p, root) for p in withheld),
        # Ratings whose groups train.groups does not hold (or never recorded), by id.
        "withheld_feedback": withheld_feedback,
        "replay": {
            "files": sorted({source_file(c.source) for c in pool}),
            "available": len(pool),
            "used": len(replay),
            "share_of_train": round(len(replay) / len(train), 4) if train else 0.0,
        },
        **report,
    }
    splits = {"train": train, "val": val, "heldout": heldout}
    return DatasetArtifact(path=target, hash=digest).write(
        splits, texts, sources.preferences, manifest, style.model_dump()
    )


def self_answers(
    cfg: ShoptalkConfig, root: Path, base_path: str | None, system_prompt: str, wanted: int
) -> list[Conversation]:
    """The base model's own answers to the built-in replay prompts (cached per base model)."""
    from shoptalk.modeling.load import resolve_base_model

    path = base_path or resolve_base_model(cfg.base_model, root)
    # Short prompts and answers: two eval batches in one cost little more than one.
    batch = 2 * cfg.eval.batch_size
    return self_answer_pool(cfg.data.replay, path, system_prompt, cfg.train.device, batch, wanted)


def prepare_sources(
    sources: Ingested, settings: DataSettings, replay: list[Conversation] | None = None
) -> tuple[Ingested, list[Conversation], dict]:
    """Clean, redact and deduplicate the ingested records (and the replay pool);
    report what changed and why.

    The report holds counts, reasons, record ids and sources, never a redacted value.
    """
    pii: Counter[str] = Counter()
    faq, dropped, faq_clusters = prepare_conversations(sources.faq, settings, pii)
    chats, dropped_chats, chat_clusters = prepare_conversations(
        sources.conversations, settings, pii
    )
    pool, dropped_replay, replay_clusters = prepare_conversations(replay or [], settings, pii)
    chunks, dropped_chunks = clean_chunks(sources.chunks, settings.clean)
    if settings.redact_pii:
        chunks = [redact_chunk(c, settings, pii) for c in chunks]
    preferences = prepare_preferences(sources.preferences, settings, pii)
    kept = sources.model_copy(
        update={"faq": faq, "conversations": chats, "chunks": chunks, "preferences": preferences}
    )
    report = {
        "dropped": [
            d.model_dump() for d in dropped + dropped_chats + dropped_chunks + dropped_replay
        ],
        "pii_redacted": dict(pii),
        "duplicates": faq_clusters + chat_clusters + replay_clusters,
    }
    return kept, pool, report


def prepared(
    records: list[Conversation], settings: DataSettings, report: dict
) -> list[Conversation]:
    """`records` cleaned, redacted and deduplicated as the sources are; what was dropped,
    merged and redacted added to `report` (`prepare_sources`')."""
    pii = Counter(report["pii_redacted"])
    kept, dropped, clusters = prepare_conversations(records, settings, pii)
    report["dropped"] += [d.model_dump() for d in dropped]
    report["duplicates"] += clusters
    report["pii_redacted"] = dict(pii)
    return kept


def prepare_conversations(
    records: list[Conversation], settings: DataSettings, pii: Counter[str]
) -> tuple[list[Conversation], list[Dropped], list[dict]]:
    """Cleaned, redacted (counted into `pii`) and deduplicated records, what was dropped,
    and each duplicate cluster with the sources of its kept and removed records."""
    records, dropped = clean_conversations(records, settings.clean)
    if settings.redact_pii:
        records = redact_all(records, settings, pii)
    source_of = {c.id: c.source for c in records}
    kept, clusters = dedupe(records, settings.dedupe)
    described = [
        cluster.model_dump()
        | {
            "kept_source": source_of[cluster.kept],
            "removed_sources": [source_of[i] for i in cluster.removed],
        }
        for cluster in clusters
    ]
    return kept, dropped, described


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


def synthesize(
    cfg: ShoptalkConfig, sources: Ingested, cache_dir: Path
) -> tuple[list[Conversation], dict]:
    """Teacher-written document QA (none without a teacher), and its cost report."""
    teacher = cfg.data.synth.teacher
    if teacher is None or not sources.chunks:
        return [], {}
    pairs, report = synth.teacher_examples(
        sources.chunks, teacher, cache_dir, is_mostly_chinese(sources)
    )
    return pairs, report.model_dump()


def assemble(
    cfg: ShoptalkConfig,
    sources: Ingested,
    synthesized: list[Conversation] | None = None,
    style: StyleRules | None = None,
) -> tuple[list[Conversation], list[Conversation], list[Conversation], dict]:
    """(train, val, heldout, how the held-out rows were chosen), replay not yet mixed in.

    With `style` rules, FAQ rows also become drafting requests answered in the guide's frame.
    """
    settings = cfg.data
    faq, heldout, split = holdout_split(list(sources.faq), cfg)
    train = augment.faq_examples(faq, settings.question_variants, settings.seed)
    train += sources.conversations
    # A teacher's questions before the rule-based ones on the same sentences: where one
    # example per answer is kept (RAFT under `rag.raft.max_examples`), it is the teacher's,
    # written the way people ask, not the cloze.
    train += synthesized or []
    if settings.document_qa:
        train += augment.document_examples(sources.chunks)
    if style is not None:
        chinese = is_mostly_chinese(sources)
        train += drafting_examples(faq, style, chinese, settings.seed, DRAFTING_EXAMPLES)
    if settings.refusals:
        chinese = is_mostly_chinese(sources)
        default = CHINESE_REFUSAL if chinese else settings.refusal_answer
        answer = settings.own_refusal_answer or default
        n_refusals = max(4, len(train) // 12)
        train += augment.refusal_examples(answer, chinese, settings.seed, n_refusals)
    train = list({c.id: c for c in train}.values())
    variants = [c for c in train if c.kind == "paraphrase"]
    n_val = round(len(variants) * settings.validation_ratio)
    val_ids = {c.id for c in random.Random(settings.seed + 1).sample(variants, n_val)}
    val = [c for c in train if c.id in val_ids]
    train = [c for c in train if c.id not in val_ids]
    return train, val, heldout, split


def holdout_split(
    faq: list[Conversation], cfg: ShoptalkConfig
) -> tuple[list[Conversation], list[Conversation], dict]:
    """(FAQ rows to train on, FAQ rows held out for the scorecard, how they were chosen).

    Only without question files. `split_by: source` holds out whole files; else
    near-duplicate FAQ rows land on the same side, so no held-out question is a
    copy of a trained one.
    """
    settings = cfg.data
    if cfg.sources.questions or settings.holdout_ratio == 0 or len(faq) < 5:
        return faq, [], {"by": None}
    if settings.split_by == "source":
        files = sorted({faq_file(c.source) for c in faq})
        if len(files) > 1:
            held = heldout_files(faq, settings.holdout_ratio, settings.seed)
            train = [c for c in faq if faq_file(c.source) not in held]
            heldout = [c for c in faq if faq_file(c.source) in held]
            logger.info("held out %d of %d FAQ rows: %s", len(heldout), len(faq), sorted(held))
            return train, heldout, {"by": "source", "heldout_files": sorted(held)}
        logger.warning(
            "data.split_by 'source' needs at least two FAQ files, found one (%s): "
            "holding out %.0f%% of its rows instead",
            files[0],
            settings.holdout_ratio * 100,
        )
    ratios = {"train": 1 - settings.holdout_ratio, "heldout": settings.holdout_ratio}
    parts = leakage_free_split(faq, ratios, settings.seed, settings.dedupe)
    return parts["train"], parts["heldout"], {"by": "ratio"}


def faq_file(source: str) -> str:
    """The file a FAQ row came from: `faq.xlsx[Returns]:7` and `faq.xlsx[Fees]:3` are `faq.xlsx`."""
    return SHEET_LABEL.sub("", source_file(source))


def heldout_files(faq: list[Conversation], ratio: float, seed: int) -> set[str]:
    """FAQ files whose rows come closest to `ratio` of all rows: files are considered in a
    seeded order and one is taken when it brings the count closer to the target.

    At least one file is held out (the smallest, when every file overshoots) and
    at least one is kept for training.
    """
    sizes = Counter(faq_file(c.source) for c in faq)
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    target = ratio * len(faq)
    held: set[str] = set()
    count = 0
    for name in order:
        if len(held) == len(order) - 1 or count >= target:
            break
        if abs(count + sizes[name] - target) < abs(count - target):
            held.add(name)
            count += sizes[name]
    return held or {min(order, key=lambda name: sizes[name])}


def is_mostly_chinese(sources: Ingested) -> bool:
    """Whether the project is Chinese, judged on its first FAQ questions and document sections."""
    sample = " ".join(c.messages[0].content for c in sources.faq[:50]) + " ".join(
        c.text[:200] for c in sources.chunks[:20]
    )
    return is_chinese(sample)
