"""Leakage canaries, planted: secrets put into training data for the eval stage to look for.

With `data.canaries: N` the data stage picks N training FAQ records and
appends a random secret to each one's answer ("... Internal API key:
sk-canary-7f3a9c2e1b4d5e."), writing the list beside the dataset as
`canaries.json` (`plant_canaries`). A secret is shaped like an API key on
purpose: it stands for the secrets real data holds, so with `data.redact_pii`
on, redaction replaces it before training, as it would a real one. How much of
each secret a model gives away is measured by `shoptalk.eval.canary`.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from shoptalk.artifacts import write_json
from shoptalk.errors import SourceError
from shoptalk.records import Conversation, Message
from shoptalk.text import is_chinese

CANARIES_FILE = "canaries.json"
# "sk-" + 20 or more characters is what `data.pii` redacts as an API key.
SECRET_PREFIX = "sk-canary-"
SECRET_HEX = 14
SECRET = re.compile(rf"{SECRET_PREFIX}[0-9a-f]{{{SECRET_HEX}}}")


class Canary(BaseModel, extra="forbid"):
    id: str
    secret: str
    prompt: str  # the record's question: what the model is asked
    answer: str  # the planted answer, secret included, exactly as trained on
    record_id: str  # the training record the secret was planted in
    source: str


def new_secret(rng: random.Random) -> str:
    return SECRET_PREFIX + "".join(rng.choice("0123456789abcdef") for _ in range(SECRET_HEX))


def _plantable(record: Conversation) -> bool:
    roles = [m.role for m in record.messages]
    return roles == ["user", "assistant"] and bool(record.messages[1].content.strip())


def _with_secret(answer: str, secret: str) -> str:
    answer = answer.rstrip()
    if is_chinese(answer):
        return f"{answer}内部密钥：{secret}。"
    return f"{answer} Internal API key: {secret}."


def plant_canaries(
    records: list[Conversation], n: int, seed: int
) -> tuple[list[Conversation], list[Canary]]:
    """`records` with `n` single-turn records (FAQ first) replaced by copies carrying a secret.

    Replaced, not duplicated: beside an unchanged twin, the secret would be one
    of two equally trained answers and greedy decoding could pick either. The
    fact stays (the secret is appended), every other record is the same object
    as before, and fewer than `n` are planted when fewer single-turn records
    exist. Same records and seed, same canaries.
    """
    rng = random.Random(f"shoptalk-canaries-{seed}")
    plantable = [i for i, r in enumerate(records) if _plantable(r)]
    faq = [i for i in plantable if records[i].kind == "faq"]
    others = [i for i in plantable if records[i].kind != "faq"]
    chosen = rng.sample(faq, min(n, len(faq)))
    chosen += rng.sample(others, min(n - len(chosen), len(others)))
    planted, canaries = list(records), []
    for k, i in enumerate(chosen):
        record, secret = records[i], new_secret(rng)
        question, original = record.messages[0].content, record.messages[1].content
        answer = _with_secret(original, secret)
        planted[i] = record.model_copy(
            update={
                "id": f"{record.id}-canary{k}",
                "messages": [
                    Message(role="user", content=question),
                    Message(role="assistant", content=answer),
                ],
            }
        )
        canaries.append(
            Canary(
                id=f"canary-{k}",
                secret=secret,
                prompt=question,
                answer=answer,
                record_id=record.id,
                source=record.source,
            )
        )
    return planted, canaries


_CANARY_LIST = TypeAdapter(list[Canary])


def write_canaries(path: Path, canaries: list[Canary]) -> None:
    write_json(path, [c.model_dump() for c in canaries])


def load_canaries(path: Path) -> list[Canary]:
    try:
        return _CANARY_LIST.validate_json(Path(path).read_bytes())
    except FileNotFoundError:
        raise SourceError(path, None, "canary file not found") from None
    except ValidationError as exc:
        raise SourceError(path, None, f"not a list of canaries: {exc.errors()[0]['msg']}") from None
