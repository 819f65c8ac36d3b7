"""Eval runs, executed in the background by the app that serves the models.

Every model call of a run — the sample and each model grader's verdict — goes
through `serve.calls` as the key that started the run: its model allow-list,
the groups its models and retrieval are filtered by, its limits, one audit row
per call. A run is therefore a series of ordinary API requests, made by the
server on the key's behalf, and cannot reach what the key could not.

At most `RUNS_AT_ONCE` runs execute at a time, `ITEMS_AT_ONCE` items each (so
the engine can batch them). Each output item is written as it finishes; a
run whose runner stopped (a restart) is picked up again by the next runner
that sees its heartbeat go stale, from its first item without an output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request

from shoptalk.eval import graders
from shoptalk.registry.evals import EvalOutputItemRow, EvalStore, new_id
from shoptalk.registry.keys import UnknownKeyError
from shoptalk.serve import schemas
from shoptalk.serve.auth import Principal
from shoptalk.serve.calls import Call, chat_completion
from shoptalk.serve.errors import ApiError

log = logging.getLogger(__name__)

RUNS_AT_ONCE = 2
ITEMS_AT_ONCE = 4
HEARTBEAT_S = 10.0
STALE_AFTER_S = 45.0
RETRIES = 5  # for 429 and 503: a run waits for its key's limits instead of failing
GRADERS = TypeAdapter(list[graders.Grader])
# A refusal no retry or other item can change: the whole run fails with it. Other 400s
# (a prompt too long for the model) are the item's.
FATAL = (401, 403, 404, 409)
RUN_PARAMS = ("model", "max_tokens", "rag")
RUNS_ROUTE = "/v1/evals/{eval_id}/runs"  # the route a run's calls are audited and counted under


class RunFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class EvalRunner:
    """The app's background eval runs; created on the first request to the Evals API."""

    def __init__(self, app: FastAPI, store: EvalStore) -> None:
        self.app, self.store = app, store
        self.slots = asyncio.Semaphore(RUNS_AT_ONCE)
        self.running: dict[str, asyncio.Task] = {}
        self.sweeper = asyncio.create_task(self.sweep())

    @classmethod
    def of(cls, app: FastAPI) -> EvalRunner:
        runner = getattr(app.state, "eval_runner", None)
        if runner is None:
            sessions = app.state.services.keys.sessions
            runner = app.state.eval_runner = cls(app, EvalStore(sessions))
        return runner

    async def close(self) -> None:
        """Stop at shutdown; unfinished runs stay active in the registry and are resumed."""
        tasks = [self.sweeper, *self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def start(self, run_id: str) -> None:
        if run_id not in self.running:
            task = asyncio.create_task(self.execute(run_id))
            self.running[run_id] = task
            task.add_done_callback(lambda _t: self.running.pop(run_id, None))

    async def sweep(self) -> None:
        """Keep this runner's runs alive in the registry; take over runs whose runner stopped."""
        while True:
            with contextlib.suppress(Exception):
                for run_id in list(self.running):
                    await asyncio.to_thread(self.store.set_run, run_id)
                for row in await asyncio.to_thread(self.store.interrupted, STALE_AFTER_S):
                    log.info("eval run %s: resumed after its runner stopped", row.id)
                    self.start(row.id)
            await asyncio.sleep(HEARTBEAT_S)

    async def execute(self, run_id: str) -> None:
        async with self.slots:
            try:
                await self.work(run_id)
            except RunFailed as failed:
                error = {"code": failed.code, "message": failed.message}
                await asyncio.to_thread(self.store.set_run, run_id, status="failed", error=error)
            except Exception:
                log.exception("eval run %s failed", run_id)
                error = {"code": "server_error", "message": "The server failed during the run."}
                await asyncio.to_thread(self.store.set_run, run_id, status="failed", error=error)

    async def work(self, run_id: str) -> None:
        run = await asyncio.to_thread(self.store.get_run_any, run_id)
        if run is None or run.status not in ("queued", "in_progress"):
            return
        evaluation = await asyncio.to_thread(self.store.get_eval, run.eval_id)
        if evaluation is None:
            raise RunFailed("eval_not_found", f"The eval {run.eval_id} was deleted.")
        principal = await asyncio.to_thread(self.principal, run.key_id)
        if not await asyncio.to_thread(self.store.begin_run, run_id):
            return  # canceled while queued
        item = ItemRun(self.app, principal, evaluation.body, run.body, run.eval_id, run_id)
        done = {row.index for row in await asyncio.to_thread(self.store.items, run_id)}
        todo = [i for i in range(len(item.rows)) if i not in done]
        for start in range(0, len(todo), ITEMS_AT_ONCE):
            current = await asyncio.to_thread(self.store.get_run_any, run_id)
            if current is None or current.status != "in_progress":
                return  # deleted, or canceled while queued
            if current.requested == "cancel":
                await asyncio.to_thread(self.store.set_run, run_id, status="canceled")
                return
            item.principal = await asyncio.to_thread(self.principal, run.key_id)
            batch = todo[start : start + ITEMS_AT_ONCE]
            rows = await asyncio.gather(*(item.grade(i) for i in batch))
            for row in rows:
                await asyncio.to_thread(self.store.add_item, row)
        await asyncio.to_thread(self.store.set_run, run_id, status="completed", requested=None)

    def principal(self, key_id: str) -> Principal:
        """The run's key as it is now: a key revoked since the run started stops it."""
        try:
            key = self.app.state.services.keys.get(key_id)
        except UnknownKeyError as exc:
            raise RunFailed("invalid_api_key", "The key that started the run was deleted.") from exc
        if key.status() != "active":
            raise RunFailed("invalid_api_key", f"The key that started the run is {key.status()}.")
        return Principal.from_key(key)


def item_request(app: FastAPI, path: str) -> Request:
    """A request as the run's calls are audited: the run's path, never disconnected."""

    async def receive() -> dict:
        await asyncio.Event().wait()  # a background run has no client to leave
        return {}

    scope = {
        "type": "http", "app": app, "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": [], "state": {}, "scheme": "http", "root_path": "",
        "server": ("eval-runner", 0),
        # The metrics' route label: the template, not one label per eval (`serve.metrics`).
        "route": SimpleNamespace(path=RUNS_ROUTE),
    }  # fmt: skip
    return Request(scope, receive)


class ItemRun:
    """How one eval run turns a data source item into an output item."""

    def __init__(
        self, app: FastAPI, principal: Principal, evaluation: dict, run: dict, eval_id: str,
        run_id: str,
    ) -> None:  # fmt: skip
        self.app, self.principal, self.eval_id, self.run_id = app, principal, eval_id, run_id
        self.source = run["data_source"]
        self.rows = rows_of(run)
        self.criteria = GRADERS.validate_python(evaluation["testing_criteria"])
        self.path = f"/v1/evals/{eval_id}/runs"

    async def grade(self, index: int) -> EvalOutputItemRow:
        row = self.rows[index]
        namespaces = {"item": row["item"], "sample": row.get("sample") or {}}
        text = namespaces["sample"].get("output_text", "")
        sample: dict[str, Any] = {"output": [{"role": "assistant", "content": text}]}
        error = None
        if self.source["type"] == "completions":
            try:
                sample = await self.sample(namespaces)
            except (graders.GraderError, ValidationError) as exc:
                sample, error = {"output": []}, {"code": "invalid_item", "message": str(exc)}
            else:
                error = sample["error"]
            namespaces["sample"] = {"output_text": "".join(o["content"] for o in sample["output"])}
        results = []
        if error is None:
            for grader in self.criteria:
                try:
                    results.append(await self.run_grader(grader, namespaces))
                except (graders.GraderError, ApiError) as exc:
                    error = {"code": "grader_error", "message": f"{grader.name}: {message(exc)}"}
                    break
        status = "error" if error else ("pass" if all(r.passed for r in results) else "fail")
        body = {
            "datasource_item": row["item"],
            "results": [r.model_dump() for r in results],
            "sample": sample,
            "error": error,
        }
        return EvalOutputItemRow(
            id=new_id("outputitem"), run_id=self.run_id, index=index, status=status,
            body=body, created=int(time.time()),
        )  # fmt: skip

    async def sample(self, namespaces: dict) -> dict:
        """The model's answer to the item's rendered messages, as OpenAI's `sample`."""
        params = self.source.get("sampling_params") or {}
        messages = self.messages(namespaces)
        body = schemas.ChatCompletionRequest(
            model=self.source["model"],
            messages=messages,
            max_completion_tokens=params.get("max_completion_tokens"),
            temperature=params.get("temperature", 1.0),
            top_p=params.get("top_p", 1.0),
            seed=params.get("seed"),
            rag=bool(self.source.get("rag")),
        )
        started = {"input": messages, "model": body.model, "seed": body.seed or 0,
                   "temperature": body.temperature, "top_p": body.top_p,
                   "max_completion_tokens": body.max_completion_tokens or 0}  # fmt: skip
        try:
            answer = await self.ask(body)
        except ApiError as exc:
            return started | {"output": [], "finish_reason": "", "usage": usage(None),
                              "error": {"code": exc.code or "error", "message": exc.message}}  # fmt: skip
        choice = answer.choices[0]
        output = [{"role": "assistant", "content": choice.message.content or ""}]
        return started | {"output": output, "finish_reason": choice.finish_reason,
                          "usage": usage(answer.usage), "error": None}  # fmt: skip

    def messages(self, namespaces: dict) -> list[dict[str, str]]:
        spec = self.source.get("input_messages") or {}
        if spec.get("type") == "item_reference":
            found = graders.render("{{" + spec["item_reference"] + "}}", namespaces)
            return [{"role": "user", "content": found}]
        return [
            {"role": m["role"], "content": graders.render(message_text(m), namespaces)}
            for m in spec.get("template", [])
        ]

    async def ask(self, body: schemas.ChatCompletionRequest) -> Any:
        """One chat completion through the API's request path, waiting out 429 and 503."""
        for attempt in range(RETRIES + 1):
            try:
                return await chat_completion(
                    item_request(self.app, self.path), self.principal, body
                )
            except ApiError as exc:
                if exc.status in FATAL or (exc.status == 400 and exc.param in RUN_PARAMS):
                    raise RunFailed(exc.code or "invalid_request", exc.message) from exc
                if exc.status not in (429, 503) or attempt == RETRIES:
                    raise
                wait = float(exc.headers.get("Retry-After", 2**attempt))
                await asyncio.sleep(min(wait, 30.0))
        raise AssertionError("unreachable")

    async def run_grader(self, grader: Any, namespaces: dict) -> graders.GraderResult:
        if isinstance(grader, graders.StringCheck):
            return graders.string_check(grader, namespaces)
        if isinstance(grader, graders.TextSimilarity):
            text = graders.render(grader.input, namespaces)
            reference = graders.render(grader.reference, namespaces)
            if grader.evaluation_metric == "cosine":
                score = await self.cosine(text, reference)
            else:
                score = graders.similarity(grader.evaluation_metric, text, reference)
            return graders.similarity_result(grader, score)
        params = grader.sampling_params or graders.SamplingParams()
        body = schemas.ChatCompletionRequest(
            model=grader.model,
            messages=graders.model_messages(grader, namespaces),
            temperature=params.temperature if params.temperature is not None else 0.0,
            top_p=params.top_p or 1.0,
            seed=params.seed,
            max_completion_tokens=params.max_completions_tokens,
        )
        reply = await self.ask(body)
        return graders.model_result(grader, reply.choices[0].message.content or "")

    async def cosine(self, text: str, reference: str) -> float:
        """Cosine of the server's embeddings, as an /v1/embeddings request of the key."""
        name = self.app.state.embedder.name
        call = Call(item_request(self.app, self.path), self.principal, "embeddings", name)
        vectors = await call.embed(schemas.EmbeddingRequest(model=name, input=[text, reference]))
        return graders.cosine(vectors.data[0].embedding, vectors.data[1].embedding)


def rows_of(run: dict) -> list[dict]:
    """A run's items: those sent in the request, or read from its file when it was created."""
    return run.get("items") or run["data_source"]["source"]["content"]


def message_text(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


def message(exc: Exception) -> str:
    return exc.message if isinstance(exc, ApiError) else str(exc)


def usage(found: Any) -> dict:
    prompt = found.prompt_tokens if found else 0
    completion = found.completion_tokens if found else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "cached_tokens": 0}  # fmt: skip
