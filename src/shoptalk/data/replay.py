"""Replay: general-purpose conversations mixed into training to limit forgetting.

    data:
      replay:
        files: [general/alpaca_en_demo.json]
        ratio: 0.2     # a fifth of train.jsonl is replay
        seed: 0

A model tuned only on one organization's FAQ drifts away from what it could do
before (follow an instruction, write a list, chat). Training on a share of
general conversations alongside is the cheapest remedy. Replay files are read
like `sources.conversations` (OpenAI messages, ShareGPT, Alpaca, LLaMA-Factory
`dataset_info.json`); each record keeps its `file:line` source and kind "chat",
so the data report shows how much of every file went in.

`ratio` is the share of the final training set (`train.jsonl`): with N domain
examples, round(ratio * N / (1 - ratio)) replay records are drawn, seeded,
without replacement.

Self-replay: the entry `builtin:general` is no file but the bundled general
prompts (`data/general/replay_prompts.jsonl`: short instructions in English and
Chinese, written for this project, none of them a prompt of the retention or
general-QA suites) answered by the base model itself, greedily, with the
project's system prompt. Training on the base's own answers pulls the tuned
model back towards what the base said to general requests, which is what the
retention suite measures, on prompts that suite never shows. The answers are
generated once (batched, with progress) and cached in
`<cache>/replay/<key>.json`, prompt by prompt, keyed by the base model's
identity, the system prompt and the device: rebuilding a dataset reuses them.
Only the prompts a build needs are answered (a seeded sample a quarter larger
than the replay records `ratio` asks for).

Self-replay is the default (`files: [builtin:general]`, `ratio: 0.1`): without it the
default recipe lost 0.64 nats/token of retention on the bundled English example, with
it 0.05, at the same closed-book recall (bench/RESULTS.md). `ratio: 0` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
from pathlib import Path

from shoptalk.artifacts import write_json
from shoptalk.config import BUILTIN_REPLAY, ReplaySettings
from shoptalk.data.augment import stable_id
from shoptalk.data.formats import CONVERSATION_SUFFIXES, read_conversations
from shoptalk.data.llamafactory import read_llamafactory
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message

logger = logging.getLogger(__name__)

LLAMAFACTORY_INFO = "dataset_info.json"
# Each name of config.BUILTIN_REPLAY_SOURCES: its bundled prompts.
BUILTIN_FILES = {"general": Path(__file__).parent / "general" / "replay_prompts.jsonl"}
# A reply cut mid-sentence would teach the model to stop mid-sentence: cut
# replies are trimmed to their last full sentence (or dropped). 64 tokens (the
# retention suite scores 48) keep generation affordable on a CPU.
SELF_ANSWER_TOKENS = 64
SELF_ANSWER_FORMAT = 2
# Prompts answered per replay record wanted: trimming and the loop check drop a few.
SPARE = 1.25
REPEATED_CHARACTER = re.compile(r"([^\s.])\1{5,}")
SENTENCE_END = re.compile(r"[.!?。！？](?=\s|$)|[。！？]")


def replay_paths(root: Path, settings: ReplaySettings) -> list[Path]:
    """The files under `data.replay.files`; a missing or unreadable one is an error naming the key."""
    paths = []
    for index, entry in enumerate(settings.files):
        if is_builtin(entry):
            continue  # answered by the base model: see self_answer_pool
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        key = f"data.replay.files[{index}] in shoptalk.yaml"
        if not path.is_file():
            found = "a folder" if path.is_dir() else "nothing"
            raise SourceError(path, None, f"expected a chat file (listed as {key}), found {found}")
        if path.suffix.lower() not in CONVERSATION_SUFFIXES:
            expected = f"expected a file ending in {', '.join(CONVERSATION_SUFFIXES)}"
            raise SourceError(path, None, f"{expected} (listed as {key}), found {path.suffix!r}")
        paths.append(path)
    return paths


def read_replay(
    root: Path, settings: ReplaySettings, errors: list[SourceError] | None = None
) -> list[Conversation]:
    """Every conversation of the replay files, kind "chat", in file order.

    Missing files always raise; bad rows follow `data.on_error` through `errors`.
    """
    pool: list[Conversation] = []
    for path in replay_paths(root, settings):
        if path.name == LLAMAFACTORY_INFO:
            chats, _ = read_llamafactory(path, root, errors)  # preference pairs are not replayed
        else:
            chats = read_conversations(path, root, errors)
        pool += [c if c.kind == "chat" else c.model_copy(update={"kind": "chat"}) for c in chats]
    return pool


def replay_count(n_train: int, ratio: float) -> int:
    """How many replay records make them `ratio` of `n_train + count`."""
    return round(ratio * n_train / (1 - ratio)) if ratio > 0 else 0


def sample_replay(
    pool: list[Conversation], n_train: int, settings: ReplaySettings
) -> list[Conversation]:
    """A seeded sample of `pool` sized for `settings.ratio`, in pool order.

    A pool too small for the ratio is used whole, with a warning: replaying a
    record twice over-weights it without adding anything general.
    """
    wanted = replay_count(n_train, settings.ratio)
    if wanted > len(pool):
        logger.warning(
            "data.replay: ratio %.3f of %d training examples needs %d replay records, "
            "the files hold %d usable ones: using all of them",
            settings.ratio,
            n_train,
            wanted,
            len(pool),
        )
    picked = random.Random(settings.seed).sample(range(len(pool)), min(wanted, len(pool)))
    return [pool[i] for i in sorted(picked)]


# --- self-replay: the base model's own answers to the bundled general prompts ------


def is_builtin(entry: str) -> bool:
    return entry.startswith(BUILTIN_REPLAY)


def builtin_entries(settings: ReplaySettings) -> list[str]:
    """The `builtin:<name>` entries of `data.replay.files` in use (none with ratio 0)."""
    return [e for e in settings.files if is_builtin(e)] if settings.ratio > 0 else []


def builtin_file(entry: str) -> Path:
    """The bundled prompts file of `builtin:<name>` (the config checked the name)."""
    return BUILTIN_FILES[entry.removeprefix(BUILTIN_REPLAY)]


def builtin_prompts(entry: str) -> list[str]:
    """The prompts of a bundled source, in file order."""
    lines = builtin_file(entry).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()]


def self_answer_key(base_path: str, system_prompt: str, device: str) -> str:
    """Changes whenever an answer would: base model, system prompt, answer length, device."""
    from shoptalk.modeling.load import model_identity

    h = hashlib.sha256(f"self-answers={SELF_ANSWER_FORMAT}".encode())
    h.update(model_identity(base_path).encode())
    h.update(json.dumps([system_prompt, SELF_ANSWER_TOKENS, device]).encode())
    return h.hexdigest()[:20]


def asked_lines(n_prompts: int, wanted: int | None, seed: int) -> list[int]:
    """Which prompts (0-based lines) the base answers: a seeded sample a little larger than
    `wanted` (some answers are dropped), or all of them."""
    if wanted is None or wanted * SPARE >= n_prompts:
        return list(range(n_prompts))
    return sorted(random.Random(seed).sample(range(n_prompts), math.ceil(wanted * SPARE)))


def self_answer_pool(
    settings: ReplaySettings,
    base_path: str,
    system_prompt: str,
    device: str = "auto",
    batch_size: int = 16,
    wanted: int | None = None,
) -> list[Conversation]:
    """The base model's answers to the built-in sources listed, as chat records.

    Only about `wanted` prompts are answered (all without it): generation is
    the slow part, and a bigger ratio later answers only the prompts not yet
    cached. A reply that is empty after trimming, or degenerate, is left out.
    """
    pool: list[Conversation] = []
    for entry in builtin_entries(settings):
        prompts = builtin_prompts(entry)
        lines = asked_lines(len(prompts), wanted, settings.seed)
        asked = [prompts[i] for i in lines]
        answers = cached_self_answers(entry, asked, base_path, system_prompt, device, batch_size)
        kept = 0
        for line, prompt, reply in zip(lines, asked, answers, strict=True):
            if not reply or degenerate(reply):
                continue
            source = f"{entry}:{line + 1}"
            kept += 1
            pool.append(
                Conversation(
                    id=stable_id("self-replay", source, prompt, reply),
                    messages=[
                        Message(role="user", content=prompt),
                        Message(role="assistant", content=reply),
                    ],
                    source=source,
                    kind="chat",
                )
            )
        logger.info(
            "data.replay: %s: %d of %d answers of the base model kept", entry, kept, len(asked)
        )
    return pool


def cached_self_answers(
    entry: str,
    prompts: list[str],
    base_path: str,
    system_prompt: str,
    device: str,
    batch_size: int,
) -> list[str]:
    """The base's trimmed greedy answers to `prompts`: those not in the cache are generated
    (once) and added to it."""
    from shoptalk.modeling.load import cache_dir

    cache = cache_dir() / "replay" / f"{self_answer_key(base_path, system_prompt, device)}.json"
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))["answers"]
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        known = {}
    missing = [p for p in dict.fromkeys(prompts) if p not in known]
    if missing:
        replies = generate_self_answers(
            missing, base_path, system_prompt, device, batch_size, entry
        )
        known |= dict(zip(missing, replies, strict=True))
        write_json(cache, {"format": SELF_ANSWER_FORMAT, "answers": known})
    else:
        logger.info("data.replay: base answers to %s from %s", entry, cache)
    return [known[p] for p in prompts]


def generate_self_answers(
    prompts: list[str],
    base_path: str,
    system_prompt: str,
    device: str,
    batch_size: int,
    entry: str,
) -> list[str]:
    """Greedy answers of the base model (through the modeling layer), trimmed to full sentences."""
    from shoptalk.modeling.chat_format import with_system
    from shoptalk.modeling.generate import answer, load_assistant

    assistant = load_assistant(base_path, None, device)
    conversations = [with_system([Message(role="user", content=p)], system_prompt) for p in prompts]
    phase = f"data: replay answers of the base model ({entry})"
    replies = answer(assistant, conversations, SELF_ANSWER_TOKENS, batch_size, phase)
    tokenizer = assistant.tokenizer
    out = []
    for reply in replies:
        # As long as the budget: the model was cut off, not done.
        cut = len(tokenizer(reply, add_special_tokens=False)["input_ids"]) >= SELF_ANSWER_TOKENS - 1
        out.append(last_full_sentence(reply) if cut else reply)
    return out


def last_full_sentence(text: str) -> str:
    """`text` up to its last sentence end; "" when no sentence ended."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def degenerate(text: str) -> bool:
    """A reply stuck in a loop: one character six times over, or few distinct 4-grams."""
    if REPEATED_CHARACTER.search(text):
        return True
    grams = [text[i : i + 4] for i in range(len(text) - 3)]
    return len(grams) >= 40 and len(set(grams)) < 0.5 * len(grams)
