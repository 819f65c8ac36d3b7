"""Small records built by tests."""

from __future__ import annotations

from shoptalk.records import Conversation, Message


def faq_record(id_: str, question: str, answer: str, kind: str = "faq") -> Conversation:
    """A one-turn FAQ conversation whose source is `faq.csv:<id>`."""
    return Conversation(
        id=id_,
        messages=[
            Message(role="user", content=question),
            Message(role="assistant", content=answer),
        ],
        source=f"faq.csv:{id_}",
        kind=kind,
    )
