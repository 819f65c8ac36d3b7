"""Ratings of answers, and the review that turns them into training data.

Feedback becomes training rows in the next build (`data.feedback`), so it is
trusted only from editors: an editor's rating goes straight to
`.shoptalk/feedback.jsonl`; a `chat` key's is stored in
`.shoptalk/feedback-pending.jsonl` until an editor accepts it (or rejects it).
Otherwise anyone with a chat key could write the model's next lessons.
Everything is stored redacted, like every prompt shoptalk keeps.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shoptalk.artifacts import write_atomic
from shoptalk.data.feedback import feedback_path, read_feedback
from shoptalk.data.pii import redact
from shoptalk.data.preferences import Feedback
from shoptalk.records import Message
from shoptalk.registry import jobs as store
from shoptalk.serve.auth import Chat, Editor
from shoptalk.serve.errors import ApiError
from shoptalk.serve.project_api import State

router = APIRouter(prefix="/v1/project/feedback", tags=["console"])
PENDING_FILE = "feedback-pending.jsonl"


class FeedbackRequest(BaseModel, extra="forbid"):
    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(max_length=8000)
    rating: Literal["up", "down"]
    correction: str | None = Field(None, max_length=8000)
    model: str | None = None


class FeedbackStored(BaseModel):
    id: str
    stored: bool
    pending_review: bool = Field(description="True until an editor accepts it for training")


class PendingFeedback(BaseModel):
    data: list[Feedback]


def pending_path(root: Path) -> Path:
    return feedback_path(root).with_name(PENDING_FILE)


@router.post("", response_model=FeedbackStored)
def feedback(body: FeedbackRequest, principal: Chat, st: State) -> FeedbackStored:
    """Store a rating; an editor's trains the next build, a chat key's waits for review."""
    item = Feedback(
        id=store.new_id("fb"),
        prompt=[Message(role="user", content=redact(body.question).text)],
        answer=redact(body.answer).text,
        rating=body.rating,
        correction=redact(body.correction).text if body.correction else None,
        model=body.model,
        created_at=datetime.now(timezone.utc),
    )
    trusted = principal.allows("editor")
    path = feedback_path(st.root) if trusted else pending_path(st.root)
    with st.lock:
        append(path, item)
    return FeedbackStored(id=item.id, stored=True, pending_review=not trusted)


@router.get("/pending", response_model=PendingFeedback)
def pending(_: Editor, st: State) -> PendingFeedback:
    """Ratings from chat keys waiting for an editor's review."""
    return PendingFeedback(data=read_feedback(pending_path(st.root)))


@router.post("/{feedback_id}/{decision}", response_model=FeedbackStored)
def review(
    feedback_id: str, decision: Literal["accept", "reject"], _: Editor, st: State
) -> FeedbackStored:
    """Accept a pending rating as training data, or drop it."""
    with st.lock:
        waiting = read_feedback(pending_path(st.root))
        item = next((f for f in waiting if f.id == feedback_id), None)
        if item is None:
            raise ApiError(404, f"No pending feedback {feedback_id}", code="not_found")
        if decision == "accept":
            append(feedback_path(st.root), item)
        rest = "".join(f.model_dump_json() + "\n" for f in waiting if f.id != feedback_id)
        write_atomic(pending_path(st.root), rest)
    return FeedbackStored(id=item.id, stored=decision == "accept", pending_review=False)


def append(path: Path, item: Feedback) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(item.model_dump_json() + "\n")
