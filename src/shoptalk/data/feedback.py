"""Ratings given in the console become training data for the next build.

- an answer rated good: the question with that answer, to keep;
- an answer rated wrong with a correction: the question with the correction,
  and a preference pair (correction chosen, the model's answer rejected) for DPO;
- an answer rated wrong without a correction teaches nothing and is skipped.

The console stores feedback in `.shoptalk/feedback.jsonl`, already redacted.

A rating may quote what the key that gave it could read (an answer from
restricted passages, or from a model trained on them), so it carries those
groups (`Feedback.groups`) and is trained, like a restricted document, only into
a model whose `train.groups` may read it (`may_train`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from shoptalk.data.formats import messages_id
from shoptalk.data.preferences import Feedback
from shoptalk.data.sources import may_read
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message

FEEDBACK_FILE = "feedback.jsonl"


def feedback_path(root: Path) -> Path:
    return root / ".shoptalk" / FEEDBACK_FILE


def read_feedback(path: Path) -> list[Feedback]:
    if not path.is_file():
        return []
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(Feedback.model_validate_json(line))
        except ValidationError as exc:
            raise SourceError(
                path, number, f"not a feedback record: {exc.errors()[0]['msg']}"
            ) from exc
    return items


def may_train(item: Feedback, train_groups: list[str]) -> bool:
    """Whether a model trained for `train_groups` may learn this rating.

    The documents' rule (`data.sources.may_read`) for each group the rating carries:
    a rating is not one document but what a key read, which may join an `hr` passage
    with a `finance` one, so `train.groups` must hold every group, not one of them.
    A rating whose groups were never recorded (None) could quote anything: withheld.
    """
    if item.groups is None:
        return False
    return all(may_read([group], train_groups) for group in item.groups)


def trainable_feedback(
    items: list[Feedback], train_groups: list[str]
) -> tuple[list[Feedback], list[str]]:
    """(the ratings a model for `train_groups` may learn, the ids of those withheld)."""
    kept = [item for item in items if may_train(item, train_groups)]
    withheld = [item.id for item in items if not may_train(item, train_groups)]
    return kept, withheld


def feedback_conversations(items: list[Feedback]) -> list[Conversation]:
    """Good answers and corrections as conversations to train on."""
    out = []
    for item in items:
        target = item.correction if item.rating == "down" else item.answer
        if not (target or "").strip():
            continue
        messages = [*item.prompt, Message(role="assistant", content=target.strip())]
        source = f"feedback:{item.id}"
        out.append(
            Conversation(
                id=messages_id(source, messages), messages=messages, source=source, kind="chat"
            )
        )
    return out
