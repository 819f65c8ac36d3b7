"""LLM-as-judge: a stronger model picks the better of two answers, against the reference.

Optional, configured under `eval.judge` with any OpenAI-compatible endpoint
(vLLM, llama.cpp, Ollama, a hosted API):

    eval:
      judge: {url: "http://127.0.0.1:8001/v1", model: qwen2.5-7b-instruct, api_key_env: JUDGE_KEY}

Every domain question with a reference answer is judged twice, the two answers
swapped between the orders: judges favour one position (usually the first),
and asking both ways cancels it. A side wins a question only when the judge
picks it in both orders; a split or a tie in either order is a tie. So a judge
that always says "A" produces ties, never a winner.

In the scorecard, suite "judge" (kind "judge") has one metric, `preferred`:
the share of questions each side won, with the paired bootstrap interval of
tuned - base. Win, tie and loss rates with their intervals, and every verdict
with the judge's rationale in both orders, go to `evals/<run-id>/judge.json`;
each question row of the report shows its verdict.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Literal

from pydantic import BaseModel

from shoptalk import progress
from shoptalk.config import JudgeSettings
from shoptalk.errors import ShoptalkError

log = logging.getLogger(__name__)

SUITE = "judge"
METRIC = "preferred"

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["base", "tuned", "tie"]


INSTRUCTIONS = """You compare two answers to a question against a reference answer.
The better answer states the reference's facts correctly and adds nothing false.
Reply with JSON only: {"rationale": "<one or two sentences>", "winner": "A" | "B" | "tie"}"""


def judge_messages(question: str, reference: str, first: str, second: str) -> list[dict]:
    user = (
        f"Question:\n{question}\n\nReference answer:\n{reference}\n\n"
        f"Answer A:\n{first}\n\nAnswer B:\n{second}"
    )
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": user}]


_WINNER = re.compile(r'"winner"\s*:\s*"(A|B|tie)"', re.I)


def parse_verdict(text: str) -> tuple[Verdict, str]:
    """(winner, rationale) from the judge's reply; JSON preferred, a bare winner key accepted."""
    try:
        reply = json.loads(text[text.index("{") : text.rindex("}") + 1])
        winner, rationale = str(reply.get("winner", "")), str(reply.get("rationale", ""))
    except (ValueError, AttributeError):
        found = _WINNER.search(text)
        winner, rationale = (found.group(1) if found else ""), text.strip()
    normalized = {"a": "A", "b": "B", "tie": "tie"}.get(winner.strip().casefold())
    if normalized is None:
        raise ShoptalkError(f"the judge's reply names no winner (A, B or tie): {text[:200]!r}")
    return normalized, rationale


class Judgement(BaseModel):
    """One question, judged in both orders."""

    outcome: Outcome
    base_first: Verdict  # answer A was the base's
    tuned_first: Verdict  # answer A was the tuned model's
    rationale_base_first: str
    rationale_tuned_first: str


def combine(base_first: Verdict, tuned_first: Verdict) -> Outcome:
    """A side wins only when the judge picks it in both orders."""
    picked = (
        {"A": "base", "B": "tuned"}.get(base_first, "tie"),
        {"A": "tuned", "B": "base"}.get(tuned_first, "tie"),
    )
    return picked[0] if picked[0] == picked[1] else "tie"


class JudgeClient:
    """Chat completions at an OpenAI-compatible endpoint, greedy, one verdict per call."""

    def __init__(self, settings: JudgeSettings) -> None:
        import httpx  # late: only a configured judge needs it

        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        if settings.api_key_env and not key:
            raise ShoptalkError(
                f"eval.judge.api_key_env names {settings.api_key_env}, which is not set"
            )
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.settings = settings
        self.http = httpx.Client(
            base_url=settings.url.rstrip("/"), headers=headers, timeout=settings.timeout_s
        )

    def verdict(self, messages: list[dict]) -> tuple[Verdict, str]:
        import httpx

        body = {"model": self.settings.model, "messages": messages, "temperature": 0}
        try:
            response = self.http.post("/chat/completions", json=body)
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise ShoptalkError(
                f"the judge at {self.settings.url} (model {self.settings.model}) failed: {exc}"
            ) from exc
        return parse_verdict(text or "")

    def judge(self, question: str, reference: str, base: str, tuned: str) -> Judgement:
        base_first, why_1 = self.verdict(judge_messages(question, reference, base, tuned))
        tuned_first, why_2 = self.verdict(judge_messages(question, reference, tuned, base))
        return Judgement(
            outcome=combine(base_first, tuned_first),
            base_first=base_first,
            tuned_first=tuned_first,
            rationale_base_first=why_1,
            rationale_tuned_first=why_2,
        )


def describe(judgement: Judgement, labels: list[str]) -> str:
    """The verdict as the report shows it, with the rationale of the first order."""
    a, b = labels
    winner = {"base": f"{a} wins", "tuned": f"{b} wins", "tie": "tie"}[judgement.outcome]
    return (
        f"{winner} ({a} first: {judgement.base_first}, {b} first: {judgement.tuned_first})"
        f" — {judgement.rationale_base_first}"
    )


def run_judge(settings: JudgeSettings, items: list[tuple[str, str, str, str]]) -> dict:
    """Judge (question, reference, base answer, tuned answer) items; rates and every verdict."""
    from shoptalk.eval.metrics import bootstrap_diff

    client = JudgeClient(settings)
    started = time.perf_counter()
    judgements = [client.judge(*item) for item in progress.track(items, "eval: judging")]
    log.info("judge: %d questions in %.1fs", len(items), time.perf_counter() - started)
    rates = {}
    for outcome in ("tuned", "tie", "base"):
        hits = [float(j.outcome == outcome) for j in judgements]
        mean, low, high = bootstrap_diff([0.0] * len(hits), hits) if hits else (0.0, 0.0, 0.0)
        rates[outcome] = [mean, low, high]
    return {
        "n": len(judgements),
        # [rate, 2.5th, 97.5th percentile], from the tuned model's side.
        "win_rate": rates["tuned"],
        "tie_rate": rates["tie"],
        "loss_rate": rates["base"],
        "judgements": [j.model_dump() for j in judgements],
    }
