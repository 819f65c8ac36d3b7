"""Question-answer pairs written by a teacher model from document chunks.

The rule-based extractor (`augment.document_examples`) needs no model but only
turns fact-carrying sentences into cloze questions. A teacher, any model behind
an OpenAI-compatible endpoint on the organization's own machines (vLLM, llama.cpp,
a `shoptalk serve`), writes the questions people actually ask.

- cost is capped: at most `max_requests` calls per build, cached answers are free;
- every answer is cached by (model, prompt), so a rerun never asks again;
- transient failures (timeouts, 429, 5xx) are retried with backoff, honouring
  `Retry-After`;
- every pair keeps its chunk's `source` and names the chunk in its id;
- a pair whose answer holds a number the excerpt does not is dropped: a teacher
  that adds a value from its own knowledge (or makes one up) would teach the
  model to do the same.

Chunks arrive here already redacted: the teacher never sees personal data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from pathlib import Path

import httpx2 as httpx
from pydantic import BaseModel

from shoptalk import progress
from shoptalk.artifacts import write_json
from shoptalk.config import TeacherSettings
from shoptalk.errors import ShoptalkError
from shoptalk.records import Chunk, Conversation, Message

log = logging.getLogger(__name__)

PROMPT_EN = (
    "Here is an excerpt from our internal documents ({source}):\n\n{text}\n\n"
    "Write {n} questions an employee or customer might ask that this excerpt answers, "
    "each with a short, complete answer taken from the excerpt. "
    'Reply with JSON lines only, one per pair: {{"question": "...", "answer": "..."}}'
)
PROMPT_ZH = (
    "以下是我们内部文档的一段（{source}）：\n\n{text}\n\n"
    "请写出 {n} 个员工或客户可能会问、且这段内容能够回答的问题，每个问题附上取自原文的简短完整答案。"
    '只用 JSON 行回答，每行一对：{{"question": "...", "answer": "..."}}'
)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
JSON_OBJECT = re.compile(r"\{[^{}]*\}")
# A number as written: digits with thousands separators or a decimal part (1,200; 4.5).
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


class SynthReport(BaseModel):
    chunks: int = 0
    requests: int = 0
    cached: int = 0
    pairs: int = 0
    unparsed: int = 0
    unsupported: int = 0
    skipped_over_cap: int = 0
    failed: int = 0


class Teacher:
    """A cached, retrying, budgeted chat-completions client."""

    def __init__(self, settings: TeacherSettings, cache_dir: Path) -> None:
        self.settings = settings
        self.cache_dir = cache_dir
        key = os.environ.get(settings.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(
            base_url=settings.base_url.rstrip("/"), headers=headers, timeout=settings.timeout_s
        )
        self.requests = 0

    def ask(self, prompt: str) -> tuple[str | None, bool]:
        """The teacher's reply (or None if over the cap), and whether it came from the cache."""
        cached = self.cache_dir / f"{self.cache_key(prompt)}.json"
        if cached.is_file():
            return json.loads(cached.read_text(encoding="utf-8"))["reply"], True
        if self.requests >= self.settings.max_requests:
            return None, False
        self.requests += 1
        reply = self.complete(prompt)
        write_json(cached, {"model": self.settings.model, "reply": reply})
        return reply, False

    def cache_key(self, prompt: str) -> str:
        s = self.settings
        key = json.dumps([s.base_url, s.model, s.temperature, s.max_tokens, prompt])
        return hashlib.sha256(key.encode()).hexdigest()[:24]

    def complete(self, prompt: str) -> str:
        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.settings.max_tokens,
            "temperature": self.settings.temperature,
            "seed": 0,
        }
        for attempt in range(self.settings.retries + 1):
            try:
                response = self.client.post("/chat/completions", json=body)
            except httpx.TransportError as exc:
                if attempt == self.settings.retries:
                    raise TeacherError(f"{self.settings.base_url}: {exc}") from exc
                time.sleep(2**attempt)
                continue
            if response.status_code == 200:
                return response.json()["choices"][0]["message"]["content"] or ""
            if response.status_code not in RETRY_STATUS or attempt == self.settings.retries:
                raise TeacherError(
                    f"{self.settings.base_url} answered {response.status_code}: "
                    f"{response.text[:300]}"
                )
            time.sleep(retry_after(response, attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


class TeacherError(ShoptalkError):
    pass


def retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        return min(60.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return float(2**attempt)


def teacher_examples(
    chunks: list[Chunk], settings: TeacherSettings, cache_dir: Path, chinese: bool
) -> tuple[list[Conversation], SynthReport]:
    """QA conversations for `chunks`, each traceable to its chunk; and what it cost."""
    report = SynthReport(chunks=len(chunks))
    template = PROMPT_ZH if chinese else PROMPT_EN
    teacher = Teacher(settings, cache_dir)
    out: list[Conversation] = []
    try:
        for chunk in progress.track(chunks, "dataset: teacher questions"):
            prompt = template.format(
                source=chunk.source, text=chunk.text, n=settings.questions_per_chunk
            )
            try:
                reply, was_cached = teacher.ask(prompt)
            except TeacherError as exc:
                # One bad call must not lose the pairs already made.
                log.warning("teacher failed on %s: %s", chunk.source, exc)
                report.failed += 1
                continue
            if reply is None:
                report.skipped_over_cap += 1
                continue
            report.cached += was_cached
            pairs = parse_pairs(reply)
            report.unparsed += not pairs
            for i, (question, answer) in enumerate(pairs[: settings.questions_per_chunk]):
                # Against what the teacher read: the source's heading path holds values too.
                if unsupported_numbers(answer, f"{chunk.source}\n{chunk.text}"):
                    report.unsupported += 1
                    continue
                out.append(
                    Conversation(
                        id=f"synth-{chunk.id}-{i}",
                        messages=[
                            Message(role="user", content=question),
                            Message(role="assistant", content=answer),
                        ],
                        source=chunk.source,
                        kind="doc_qa",
                    )
                )
    finally:
        teacher.close()
    report.requests = teacher.requests
    report.pairs = len(out)
    if report.skipped_over_cap:
        log.warning(
            "teacher: %d chunks skipped, over max_requests=%d",
            report.skipped_over_cap,
            settings.max_requests,
        )
    return out, report


def numbers(text: str) -> set[str]:
    """The numbers in `text`, compared as values: `1,200` = `1200`, `07` = `7`, `７５` = `75`."""
    found = NUMBER.findall(unicodedata.normalize("NFKC", text))
    return {n.replace(",", "").lstrip("0") or "0" for n in found}


def unsupported_numbers(answer: str, excerpt: str) -> set[str]:
    """The numbers of `answer` that `excerpt` does not hold (a date or amount written in
    words there counts as missing: dropping a good pair costs less than training a bad one)."""
    return numbers(answer) - numbers(excerpt)


def parse_pairs(reply: str) -> list[tuple[str, str]]:
    """Question-answer pairs from a reply of JSON objects, tolerant of prose around them."""
    pairs = []
    for match in JSON_OBJECT.finditer(reply):
        try:
            item = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        question, answer = (
            str(item.get("question", "")).strip(),
            str(item.get("answer", "")).strip(),
        )
        if question and answer:
            pairs.append((question, answer))
    return pairs
