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
without replacement. Off by default (ratio 0, no files).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from shoptalk.config import ReplaySettings
from shoptalk.data.formats import CONVERSATION_SUFFIXES, read_conversations
from shoptalk.data.llamafactory import read_llamafactory
from shoptalk.errors import SourceError
from shoptalk.records import Conversation

logger = logging.getLogger(__name__)

LLAMAFACTORY_INFO = "dataset_info.json"


def replay_paths(root: Path, settings: ReplaySettings) -> list[Path]:
    """The files under `data.replay.files`; a missing or unreadable one is an error naming the key."""
    paths = []
    for index, entry in enumerate(settings.files):
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
