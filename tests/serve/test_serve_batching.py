"""The batcher: concurrent requests share forward passes, the queue is bounded, disconnects cancel."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from serve_harness import serving

QUESTIONS = [
    "What is the claim window?",
    "Who runs the Oslo depot?",
    "退货期限是多少天？",
    "Hello, how can I help you today?",
]


def ask(client, question: str, max_tokens: int = 6) -> str:
    answer = client.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return answer.choices[0].message.content


def test_concurrent_requests_merge_into_one_batch(tiny_model: Path, tmp_path: Path, one_thread):
    with serving(tmp_path, model_dir=tiny_model, batch_wait_ms=500) as served:
        client = served.client()
        alone = [ask(client, q) for q in QUESTIONS]
        engine = served.engine
        batches, forwards = engine.batcher.batches, engine.forward_calls
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            together = list(pool.map(lambda q: ask(client, q), QUESTIONS))
        # One batch: a prefill plus 5 decoding steps for all four requests, not 4 x 6.
        assert engine.batcher.batches - batches == 1
        assert engine.forward_calls - forwards == 6
        assert together == alone  # left padding does not change any answer


def test_a_full_queue_answers_503_at_once(tiny_model: Path, tmp_path: Path, one_thread):
    with serving(
        tmp_path, model_dir=tiny_model, max_batch_size=1, max_queue=2, batch_wait_ms=0
    ) as served:
        client = served.client()

        def timed(stream: bool) -> tuple[str, float]:
            start = time.monotonic()
            try:
                answer = client.chat.completions.create(
                    model="base",
                    messages=[{"role": "user", "content": "Hello"}],
                    max_tokens=300,
                    temperature=0,
                    stream=stream,
                )
                if stream:  # a refused stream is an HTTP 503 too, not an error event
                    list(answer)
                return "ok", time.monotonic() - start
            except openai.InternalServerError as exc:
                assert exc.status_code == 503
                assert exc.response.headers["retry-after"] == "1"
                return "503", time.monotonic() - start

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(timed, [False, True] * 4))
    refused = [seconds for outcome, seconds in results if outcome == "503"]
    served_ok = [seconds for outcome, seconds in results if outcome == "ok"]
    assert len(refused) >= 4 and len(served_ok) >= 2  # one running + two waiting, at least
    assert max(refused) < min(max(served_ok), 2.0)


def test_a_client_that_disconnects_stops_its_generation(
    tiny_model: Path, tmp_path: Path, one_thread
):
    with serving(tmp_path, model_dir=tiny_model) as served:
        engine = served.engine
        before = engine.forward_calls
        stream = served.client().chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": "Tell me everything."}],
            max_tokens=900,
            temperature=0,
            stream=True,
        )
        for _, _chunk in zip(range(3), stream, strict=False):
            pass
        stream.close()
        deadline = time.monotonic() + 10
        while engine.cancelled_rows == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.cancelled_rows == 1
        settled = engine.forward_calls
        time.sleep(0.3)
        assert engine.forward_calls == settled  # the worker is idle again
        assert settled - before < 300  # far from the 900 tokens asked for


def test_a_request_over_the_time_limit_is_504_and_stops(
    tiny_model: Path, tmp_path: Path, one_thread
):
    with serving(tmp_path, model_dir=tiny_model, request_timeout_s=0.5) as served:
        with pytest.raises(openai.APIStatusError) as caught:
            ask(served.client(), "Tell me everything.", max_tokens=900)
        assert caught.value.status_code == 504
        deadline = time.monotonic() + 10
        while served.engine.cancelled_rows == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served.engine.cancelled_rows == 1


def test_requests_join_a_running_batch_and_answer_as_if_alone(
    tiny_model: Path, tmp_path: Path, one_thread
):
    def sample(client, question: str) -> str:
        answer = client.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": question}],
            max_tokens=10,
            seed=3,
        )
        return answer.choices[0].message.content

    with serving(tmp_path, model_dir=tiny_model, batch_wait_ms=0) as served:
        client = served.client()
        alone = [sample(client, q) for q in QUESTIONS]
        joined_before = served.engine.joined_rows
        long = client.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": "Tell me everything."}],
            max_tokens=900,
            stream=True,
        )
        next(iter(long))  # the long answer is being generated
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            joined = list(pool.map(lambda q: sample(client, q), QUESTIONS))
        long.close()
        # Joined rows sit beside a longer, left-padded cache; their answers must not change.
        assert joined == alone
        assert served.engine.joined_rows - joined_before >= len(QUESTIONS)
