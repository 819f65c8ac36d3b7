"""OpenAI's Evals API on the organization's own server: evals, runs, output items.

Shapes follow OpenAI's, so `client.evals.create(...)` and
`client.evals.runs.create(...)` work unchanged (docs/evals.md). Graders are
`eval.graders`; runs execute in the background (`serve.eval_runs`), every
model call through the API's request path as the key that started the run.
Every route needs `editor`. A run's items, outputs and data source may quote
documents of any group the key that started it could read, so a run is shown
only to keys that read at least as much (`may_read_run`): the key itself, the
owner's scope, or a key holding every group of the starting key. To any other
key the run does not exist (404; left out of lists), like a made-up id
(docs/permissions.md, "Evals"). An eval itself (its grader references, labels and
item schema, typed by the key that created it) follows the same rule
(`may_read_eval`), and so do its runs' routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError

from shoptalk.eval import graders
from shoptalk.registry.evals import EvalOutputItemRow, EvalRow, EvalRunRow, EvalStore
from shoptalk.serve.auth import Editor, Principal, key_of, reads_as_much
from shoptalk.serve.errors import ApiError
from shoptalk.serve.eval_runs import EvalRunner, rows_of

# Out of the OpenAPI schema the console's client is typed from: the console does not
# call this API, and its reference is OpenAI's.
router = APIRouter(prefix="/v1/evals", tags=["evals"], include_in_schema=False)
MAX_ITEMS = 5_000
Metadata = Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)]


class CustomDataSourceConfig(BaseModel, extra="forbid"):
    type: Literal["custom"]
    item_schema: dict[str, Any]
    include_sample_schema: bool = False


class EvalCreate(BaseModel, extra="forbid"):
    name: str | None = Field(None, max_length=300)
    metadata: Metadata | None = None
    data_source_config: CustomDataSourceConfig
    testing_criteria: list[graders.Grader] = Field(min_length=1, max_length=20)


class EvalUpdate(BaseModel, extra="forbid"):
    name: str | None = Field(None, max_length=300)
    metadata: Metadata | None = None


class SourceRow(BaseModel, extra="forbid"):
    item: dict[str, Any]
    sample: dict[str, Any] | None = None


class FileContent(BaseModel, extra="forbid"):
    type: Literal["file_content"]
    content: list[SourceRow] = Field(min_length=1, max_length=MAX_ITEMS)


class FileId(BaseModel, extra="forbid"):
    type: Literal["file_id"]
    id: str = Field(min_length=1, max_length=40)


class Template(BaseModel, extra="forbid"):
    type: Literal["template"]
    template: list[graders.Message] = Field(min_length=1, max_length=50)


class ItemReference(BaseModel, extra="forbid"):
    type: Literal["item_reference"]
    item_reference: str = Field(pattern=r"^item(\.[A-Za-z_][\w-]*)+$")


class RunSampling(BaseModel, extra="allow"):
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    max_completion_tokens: int | None = Field(None, ge=1)


class RunDataSource(BaseModel, extra="forbid"):
    type: Literal["completions", "jsonl"]
    source: Annotated[FileContent | FileId, Field(discriminator="type")]
    input_messages: Annotated[Template | ItemReference, Field(discriminator="type")] | None = None
    model: str | None = Field(None, min_length=1, max_length=200)
    sampling_params: RunSampling | None = None
    rag: bool = Field(
        False,
        description="shoptalk extension: answer each item from the project's documents the "
        "key may read, as `rag: true` on chat completions",
    )


class RunCreate(BaseModel, extra="forbid"):
    name: str | None = Field(None, max_length=300)
    metadata: Metadata | None = None
    data_source: RunDataSource


async def runner_of(request: Request) -> EvalRunner:
    """The app's runner, started on the event loop (its sweeper is an asyncio task)."""
    return EvalRunner.of(request.app)


Runner = Annotated[EvalRunner, Depends(runner_of)]


def bad(where: str, message: str) -> ApiError:
    return ApiError(400, f"{where}: {message}", code="invalid_request", param=where)


# --- evals ---------------------------------------------------------------------------------


def check_eval(body: EvalCreate) -> None:
    """Every template names a field the item schema declares; 400 naming the first that does not."""
    try:
        fields = graders.item_fields(body.data_source_config.item_schema)
        for i, grader in enumerate(body.testing_criteria):
            for where, template in graders.grader_templates(grader):
                graders.check_template(template, f"testing_criteria.{i}.{where}", fields, True)
    except graders.GraderError as exc:
        where = exc.where
        if where.startswith("item_schema"):
            where = f"data_source_config.{where}"
        raise bad(where, exc.detail) from exc


def eval_object(row: EvalRow) -> dict:
    body = row.body
    config = body["data_source_config"]
    schema = {"type": "object", "properties": {"item": config["item_schema"]}, "required": ["item"]}
    if config.get("include_sample_schema"):
        schema["properties"]["sample"] = {
            "type": "object",
            "properties": {"output_text": {"type": "string"}},
        }
        schema["required"].append("sample")
    return {
        "id": row.id, "object": "eval", "created_at": row.created, "name": body.get("name") or "",
        "metadata": body.get("metadata") or {}, "testing_criteria": body["testing_criteria"],
        "data_source_config": {"type": "custom", "schema": schema},
    }  # fmt: skip


def find_eval(runner: EvalRunner, eval_id: str, principal: Principal) -> EvalRow:
    """The eval, if the key may read it (`may_read_eval`); a 404 as for an unknown id if not."""
    row = runner.store.get_eval(eval_id)
    if row is None or not may_read_eval(runner, principal, row):
        raise ApiError(404, f"No eval with id {eval_id!r}.", code="not_found", param="eval_id")
    return row


def may_read_eval(runner: EvalRunner, principal: Principal, row: EvalRow) -> bool:
    """Whether `principal` reads everything the key that created the eval could read.

    Its grader references, labels and item schema are what that key typed, and it may
    have typed what its groups read (a reference answer copied from a restricted
    document): the same rule as for its runs (`may_read_run`). An eval with no key
    (made before keys were recorded) or whose key was deleted is the owner's.
    """
    return reads_as_much(principal, key_of(runner.app, row.key_id))


@router.post("")
def create_eval(body: EvalCreate, runner: Runner, principal: Editor) -> dict:
    check_eval(body)
    store = runner.store
    return eval_object(
        store.add_eval(body.model_dump(mode="json", exclude_none=True), principal.key_id)
    )


@router.get("")
def list_evals(
    runner: Runner, principal: Editor, after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20, order: Literal["asc", "desc"] = "asc",
) -> dict:  # fmt: skip
    rows = [r for r in runner.store.list_evals() if may_read_eval(runner, principal, r)]
    return page([eval_object(r) for r in rows], after, limit, order)


@router.get("/{eval_id}")
def get_eval(eval_id: str, runner: Runner, principal: Editor) -> dict:
    return eval_object(find_eval(runner, eval_id, principal))


@router.post("/{eval_id}")
def update_eval(eval_id: str, body: EvalUpdate, runner: Runner, principal: Editor) -> dict:
    store = runner.store
    find_eval(runner, eval_id, principal)
    return eval_object(store.update_eval(eval_id, body.model_dump(exclude_none=True)))


@router.delete("/{eval_id}")
def delete_eval(eval_id: str, runner: Runner, principal: Editor) -> dict:
    store = runner.store
    find_eval(runner, eval_id, principal)
    store.delete_eval(eval_id)
    return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}


# --- runs ----------------------------------------------------------------------------------


def check_run(
    evaluation: EvalRow, body: RunCreate, rows: list[SourceRow], where: Callable[[int], str]
) -> None:
    """Items fit the eval's schema and the messages name its fields; 400 naming the place."""
    source = body.data_source
    schema = evaluation.body["data_source_config"]["item_schema"]
    fields = graders.item_fields(schema)
    for i, row in enumerate(rows):
        problem = graders.item_problem(schema, row.item)
        if problem is not None:
            raise bad(f"{where(i)}.item", problem)
    if source.type == "jsonl":
        for i, row in enumerate(rows):
            if not (row.sample or {}).get("output_text"):
                raise bad(f"{where(i)}.sample", "a jsonl run needs sample.output_text")
        return
    if source.model is None:
        raise bad("data_source.model", "a completions run needs the model to sample")
    if source.input_messages is None:
        raise bad("data_source.input_messages", "a completions run needs its messages")
    messages = source.input_messages
    templates = (
        [(f"template.{i}.content", m.text()) for i, m in enumerate(messages.template)]
        if isinstance(messages, Template)
        else [("item_reference", "{{" + messages.item_reference + "}}")]
    )
    for where, template in templates:
        try:
            graders.check_template(template, f"data_source.input_messages.{where}", fields, False)
        except graders.GraderError as exc:
            raise bad(exc.where, exc.detail) from exc


def file_rows(
    store: EvalStore, file_id: str, principal: Principal, runner: EvalRunner
) -> list[SourceRow]:
    """The items of an uploaded JSONL file (`POST /v1/files`): `{"item": {...}}` per line.

    Only a file the key may read (`serve.jobs_api.may_read_file`): a run's items are its.
    """
    from shoptalk.registry.jobs import FileRow

    with store.sessions() as session:
        row = session.get(FileRow, file_id)
        owner = row.key_id if row is not None else None
    path = store.file_path(file_id)
    if path is None or not reads_as_much(principal, key_of(runner.app, owner)):
        raise ApiError(
            404, f"No file {file_id!r}.", code="not_found", param="data_source.source.id"
        )
    rows = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(SourceRow.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors()[0]
                message = f"line {number}: {'.'.join(map(str, first['loc']))} {first['msg']}"
                raise bad(f"data_source.source.id ({file_id})", message) from exc
            if len(rows) > MAX_ITEMS:
                raise bad("data_source.source.id", f"more than {MAX_ITEMS} items")
    if not rows:
        raise bad("data_source.source.id", f"the file {file_id} holds no items")
    return rows


def run_object(row: EvalRunRow, items: list[EvalOutputItemRow], criteria: list[dict]) -> dict:
    counts = {
        "total": len(rows_of(row.body)),
        "errored": 0,
        "passed": 0,
        "failed": 0,
    }
    per = {c["name"]: {"testing_criteria": c["name"], "passed": 0, "failed": 0} for c in criteria}
    models: dict[str, dict] = {}
    for item in items:
        counts[{"pass": "passed", "fail": "failed", "error": "errored"}[item.status]] += 1
        for result in item.body["results"]:
            if result["name"] in per:
                per[result["name"]]["passed" if result["passed"] else "failed"] += 1
        sample = item.body.get("sample") or {}
        if sample.get("model"):
            used = models.setdefault(sample["model"], {
                "model_name": sample["model"], "invocation_count": 0, "prompt_tokens": 0,
                "completion_tokens": 0, "total_tokens": 0, "cached_tokens": 0})  # fmt: skip
            used["invocation_count"] += 1
            for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                used[name] += sample["usage"][name]
    body = row.body
    return {
        "id": row.id, "object": "eval.run", "eval_id": row.eval_id, "created_at": row.created,
        "name": body.get("name") or "", "metadata": body.get("metadata") or {},
        "model": body["data_source"].get("model") or "", "status": row.status,
        "data_source": body["data_source"], "error": row.error, "result_counts": counts,
        "per_testing_criteria_results": list(per.values()), "per_model_usage": list(models.values()),
        "report_url": f"/v1/evals/{row.eval_id}/runs/{row.id}/output_items",
    }  # fmt: skip


def find_run(
    store: EvalStore, eval_id: str, run_id: str, principal: Principal, runner: EvalRunner
) -> EvalRunRow:
    """The run, if the key may read it (`may_read_run`); a 404 as for an unknown id if not."""
    row = store.get_run(eval_id, run_id)
    if row is None or not may_read_run(runner, principal, row):
        raise ApiError(
            404, f"No run {run_id!r} of eval {eval_id!r}.", code="not_found", param="run_id"
        )
    return row


def may_read_run(runner: EvalRunner, principal: Principal, row: EvalRunRow) -> bool:
    """Whether `principal` reads everything the key that started the run could read.

    The run asked its models and retrieval as that key, and its items are what that
    key sent: any of it may come from a document of that key's groups (serve.auth.held_groups).
    A key since deleted is treated as the owner's: its runs are the owner's to read.
    """
    return reads_as_much(principal, key_of(runner.app, row.key_id))


def show_run(store: EvalStore, evaluation: EvalRow, row: EvalRunRow) -> dict:
    return run_object(row, store.items(row.id), evaluation.body["testing_criteria"])


@router.post("/{eval_id}/runs")
async def create_run(eval_id: str, body: RunCreate, runner: Runner, principal: Editor) -> dict:
    evaluation = await asyncio.to_thread(find_eval, runner, eval_id, principal)
    spec = body.model_dump(mode="json", exclude_none=True)
    source = body.data_source.source
    if isinstance(source, FileContent):
        check_run(evaluation, body, source.content, lambda i: f"data_source.source.content.{i}")
    else:
        rows = await asyncio.to_thread(file_rows, runner.store, source.id, principal, runner)
        check_run(evaluation, body, rows, lambda i: f"data_source.source.id ({source.id}) item {i}")
        spec["items"] = [r.model_dump(exclude_none=True) for r in rows]
    row = await asyncio.to_thread(runner.store.add_run, eval_id, spec, principal.key_id)
    runner.start(row.id)
    return run_object(row, [], evaluation.body["testing_criteria"])


@router.get("/{eval_id}/runs")
def list_runs(
    eval_id: str, runner: Runner, principal: Editor, after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20, order: Literal["asc", "desc"] = "asc",
    status: Literal["queued", "in_progress", "completed", "canceled", "failed"] | None = None,
) -> dict:  # fmt: skip
    store = runner.store
    evaluation = find_eval(runner, eval_id, principal)
    runs = [
        r
        for r in store.list_runs(eval_id)
        if (status is None or r.status == status) and may_read_run(runner, principal, r)
    ]
    return page([show_run(store, evaluation, r) for r in runs], after, limit, order)


@router.get("/{eval_id}/runs/{run_id}")
def get_run(eval_id: str, run_id: str, runner: Runner, principal: Editor) -> dict:
    store = runner.store
    evaluation = find_eval(runner, eval_id, principal)
    return show_run(store, evaluation, find_run(store, eval_id, run_id, principal, runner))


@router.post("/{eval_id}/runs/{run_id}/cancel")
def cancel_run(eval_id: str, run_id: str, runner: Runner, principal: Editor) -> dict:
    store = runner.store
    evaluation = find_eval(runner, eval_id, principal)
    find_run(store, eval_id, run_id, principal, runner)
    store.request_cancel(run_id)
    return show_run(store, evaluation, find_run(store, eval_id, run_id, principal, runner))


@router.delete("/{eval_id}/runs/{run_id}")
def delete_run(eval_id: str, run_id: str, runner: Runner, principal: Editor) -> dict:
    store = runner.store
    find_eval(runner, eval_id, principal)
    find_run(store, eval_id, run_id, principal, runner)
    store.delete_run(run_id)
    return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}


# --- output items --------------------------------------------------------------------------


def item_object(row: EvalOutputItemRow, eval_id: str) -> dict:
    body = row.body
    sample = body.get("sample") or {}
    if body.get("error"):
        sample = sample | {"error": body["error"]}
    return {
        "id": row.id, "object": "eval.run.output_item", "created_at": row.created,
        "eval_id": eval_id, "run_id": row.run_id, "datasource_item_id": row.index,
        "datasource_item": body["datasource_item"], "status": row.status,
        "results": body["results"], "sample": sample,
    }  # fmt: skip


@router.get("/{eval_id}/runs/{run_id}/output_items")
def list_output_items(
    eval_id: str, run_id: str, runner: Runner, principal: Editor, after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20, order: Literal["asc", "desc"] = "asc",
    status: Literal["pass", "fail"] | None = None,
) -> dict:  # fmt: skip
    store = runner.store
    find_eval(runner, eval_id, principal)
    find_run(store, eval_id, run_id, principal, runner)
    rows = [r for r in store.items(run_id) if status is None or r.status == status]
    return page([item_object(r, eval_id) for r in rows], after, limit, order)


@router.get("/{eval_id}/runs/{run_id}/output_items/{output_item_id}")
def get_output_item(
    eval_id: str, run_id: str, output_item_id: str, runner: Runner, principal: Editor
) -> dict:
    store = runner.store
    find_eval(runner, eval_id, principal)
    find_run(store, eval_id, run_id, principal, runner)
    for row in store.items(run_id):
        if row.id == output_item_id:
            return item_object(row, eval_id)
    raise ApiError(
        404, f"No output item {output_item_id!r}.", code="not_found", param="output_item_id"
    )


def page(objects: list[dict], after: str | None, limit: int, order: str) -> dict:
    """OpenAI's cursor page: objects after the one with id `after`, in `order` of creation."""
    if order == "desc":
        objects = objects[::-1]
    ids = [o["id"] for o in objects]
    if after is not None:
        objects = objects[ids.index(after) + 1 :] if after in ids else []
    shown = objects[:limit]
    return {
        "object": "list", "data": shown, "has_more": len(objects) > limit,
        "first_id": shown[0]["id"] if shown else None, "last_id": shown[-1]["id"] if shown else None,
    }  # fmt: skip
