"""Ratings of answers, and the review that turns them into training data.

Feedback becomes training rows in the next build (`data.feedback`), so it is
trusted only from editors: an editor's rating goes straight to
`.shoptalk/feedback.jsonl`; a `chat` key's is stored in
`.shoptalk/feedback-pending.jsonl` until an editor accepts it (or rejects it).
Otherwise anyone with a chat key could write the model's next lessons.
Everything is stored redacted, like every prompt shoptalk keeps.

The review (`pending_feedback`, `review_feedback`) is shared with
`shoptalk feedback review`; a lock file keeps the server and the CLI from
interleaving their writes.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from shoptalk.artifacts import open_private, private_dir, write_atomic
from shoptalk.data.feedback import feedback_path, read_feedback
from shoptalk.data.pii import redact
from shoptalk.data.preferences import Feedback
from shoptalk.errors import ShoptalkError
from shoptalk.rag.store import load_index
from shoptalk.records import Message
from shoptalk.registry import jobs as store
from shoptalk.serve.auth import Chat, Editor, Principal, held_groups, key_of, reads_as_much
from shoptalk.serve.errors import ApiError
from shoptalk.serve.project_api import ProjectState, State

router = APIRouter(prefix="/v1/project/feedback", tags=["console"])
PENDING_FILE = "feedback-pending.jsonl"


class FeedbackRequest(BaseModel, extra="forbid"):
    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(max_length=8000)
    rating: Literal["up", "down"]
    correction: str | None = Field(None, max_length=8000)
    model: str | None = Field(None, max_length=300)
    sources: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list,
        max_length=100,
        description="The `source` of each citation shown with the answer: the rating then "
        "carries those passages' groups (trained only where `train.groups` may read them)",
    )


class FeedbackStored(BaseModel):
    id: str
    stored: bool
    pending_review: bool = Field(description="True until an editor accepts it for training")


class PendingFeedback(BaseModel):
    data: list[Feedback]


def pending_path(root: Path) -> Path:
    return feedback_path(root).with_name(PENDING_FILE)


class NoSuchFeedback(ShoptalkError):
    """A review named feedback that is not waiting for review."""


@contextlib.contextmanager
def feedback_lock(root: Path) -> Iterator[None]:
    """One writer of the feedback files at a time, across the server and the CLI."""
    path = feedback_path(root).with_name(".feedback.lock")
    private_dir(path.parent)
    with open_private(path) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def store_feedback(root: Path, item: Feedback, trusted: bool) -> None:
    """An editor's rating trains the next build; anyone else's waits for review."""
    with feedback_lock(root):
        append(feedback_path(root) if trusted else pending_path(root), item)


def pending_feedback(root: Path) -> list[Feedback]:
    return read_feedback(pending_path(root))


def review_feedback(root: Path, feedback_id: str, accept: bool) -> Feedback:
    """Move a pending rating into the training feedback (accept), or drop it."""
    with feedback_lock(root):
        waiting = read_feedback(pending_path(root))
        item = next((f for f in waiting if f.id == feedback_id), None)
        if item is None:
            known = ", ".join(f.id for f in waiting) or "none"
            raise NoSuchFeedback(
                f"No feedback {feedback_id} waits for review in {pending_path(root)}; "
                f"waiting: {known}."
            )
        if accept:
            append(feedback_path(root), item)
        rest = "".join(f.model_dump_json() + "\n" for f in waiting if f.id != feedback_id)
        write_atomic(pending_path(root), rest)
        return item


def append(path: Path, item: Feedback) -> None:
    private_dir(path.parent)
    with open_private(path) as f:
        f.write(item.model_dump_json() + "\n")


@router.post("", response_model=FeedbackStored)
def feedback(body: FeedbackRequest, principal: Chat, request: Request, st: State) -> FeedbackStored:
    """Store a rating; an editor's trains the next build, a chat key's waits for review."""
    item = Feedback(
        id=store.new_id("fb"),
        prompt=[Message(role="user", content=redact(body.question).text)],
        answer=redact(body.answer).text,
        rating=body.rating,
        correction=redact(body.correction).text if body.correction else None,
        model=body.model,
        created_at=datetime.now(timezone.utc),
        key_id=principal.key_id,
        groups=rating_groups(request, principal, body, st),
    )
    trusted = principal.allows("editor")
    store_feedback(st.root, item, trusted)
    return FeedbackStored(id=item.id, stored=True, pending_review=not trusted)


def rating_groups(
    request: Request, principal: Principal, body: FeedbackRequest, st: ProjectState
) -> list[str] | None:
    """The groups whose documents a rating may quote, so that it trains only models for them.

    - the rating key's groups: it may have read and typed anything they read (an admin
      reads everything, and is the owner: its own groups are not a bound);
    - the groups of the passages the answer cited (`sources`, as the index holds them):
      an admin's `rag` answer quotes restricted documents too;
    - the groups of the model that answered (`train.groups` of its run): what it learnt;
      None (never trained) for a model only the owner's scope is served.
    """
    groups = set(held_groups(principal) or [])
    if body.sources:
        index = load_index(st.project().index)
        wanted = set(body.sources)
        for chunk in index.chunks if index is not None else []:
            if chunk.source in wanted:
                groups.update(chunk.acl)
    catalog = getattr(request.app.state.engine, "catalog", None)
    model_groups: list[str] | None = []
    if body.model and catalog is not None:
        # Not a model this server serves (404): it learnt nothing from here.
        with contextlib.suppress(ApiError):
            model_groups = catalog.groups(body.model)
    if model_groups is None:
        return None  # a model only the owner is served: it may say anything, never trained
    return sorted(groups | set(model_groups))


def may_review(request: Request, principal: Principal, item: Feedback) -> bool:
    """A rated answer may quote what the rating key's groups read (a `rag` answer): only
    keys that read as much see it in the review queue (`serve.auth.reads_as_much`)."""
    return reads_as_much(principal, key_of(request, item.key_id))


@router.get("/pending", response_model=PendingFeedback)
def pending(principal: Editor, request: Request, st: State) -> PendingFeedback:
    """Ratings from chat keys waiting for an editor's review (those this key may read)."""
    waiting = pending_feedback(st.root)
    return PendingFeedback(data=[f for f in waiting if may_review(request, principal, f)])


@router.post("/{feedback_id}/{decision}", response_model=FeedbackStored)
def review(
    feedback_id: str,
    decision: Literal["accept", "reject"],
    principal: Editor,
    request: Request,
    st: State,
) -> FeedbackStored:
    """Accept a pending rating as training data, or drop it."""
    try:
        waiting = next((f for f in pending_feedback(st.root) if f.id == feedback_id), None)
        if waiting is not None and not may_review(request, principal, waiting):
            raise NoSuchFeedback(feedback_id)
        item = review_feedback(st.root, feedback_id, accept=decision == "accept")
    except NoSuchFeedback as exc:
        # The CLI's message names the file; a client learns only that the id is not waiting.
        raise ApiError(
            404, f"No feedback {feedback_id} waits for review.", code="not_found"
        ) from exc
    return FeedbackStored(id=item.id, stored=decision == "accept", pending_review=False)
