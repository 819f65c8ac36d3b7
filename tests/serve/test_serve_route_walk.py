"""Issue 18's first bar: every route of the app, every scope, a key with and without groups.

The status of each call matches the documented permission table
(`permission_table.py`, the same as docs/architecture.md), and no response a
key without the `hr` group gets carries anything of a document restricted to
`hr`: its canary text, its file name, a quote of it.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from permission_table import OWNER, ROLE_SCOPES, ROUTES, admits

from shoptalk.pipeline import index_documents
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_project

CANARY = "ZEBRA-CANARY-7731"
SECRET_NAME = "laptop-policy-canary"
SECRET_DOC = f"""---
groups: [hr]
---
# Laptop policy

Every employee gets a new laptop every 42 months, with the laptop code word {CANARY}.
"""
LEAKS = (CANARY, SECRET_NAME, "every 42 months")
# One sentence answers the whole question: the abstention rule (rag.abstain) must let the
# cleared keys' retrieval through, or every leak check below would pass on refusals alone.
QUESTION = "How often does an employee get a new laptop, and what is the laptop code word?"
SCOPES = {
    "none": None,
    "chat": frozenset({"chat"}),
    "embeddings": frozenset({"embeddings"}),
    "editor": frozenset({"editor"}),
    "admin": frozenset({"admin"}),
    "owner": frozenset({"owner"}),  # another name for admin
}
PATH_VALUES = {
    "model": "base",
    "key_id": "key-unknown",
    "file_id": "file-unknown",
    "job_id": "ftjob-unknown",
    "build_id": "build-unknown",
    "action": "cancel",
    "feedback_id": "fb-unknown",
    "decision": "reject",
    "eval_id": "eval_unknown",
    "run_id": "evalrun_unknown",
    "output_item_id": "outputitem_unknown",
}
READ_VALUES: dict[str, str] = {}  # the planted eval run's ids (plant_eval_run)
EVAL_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}}
BODIES = {
    ("POST", "/v1/chat/completions"): {
        "model": "base",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 4,
        "rag": True,
    },
    ("POST", "/v1/completions"): {"model": "base", "prompt": QUESTION, "max_tokens": 4},
    ("POST", "/v1/embeddings"): {"model": "base", "input": QUESTION},
    ("POST", "/v1/project/playground"): {"question": QUESTION, "rag": True, "max_tokens": 4},
    ("POST", "/v1/project/feedback"): {"question": QUESTION, "answer": "x", "rating": "up"},
    ("PATCH", "/v1/project"): {"name": "Kestrel"},
    ("POST", "/v1/projects"): {"name": "Walk"},
    ("POST", "/v1/admin/keys"): {"name": "walk", "scopes": ["chat"]},
    ("POST", "/v1/fine_tuning/jobs"): {"model": "base", "training_file": "file-unknown"},
    ("POST", "/v1/evals"): {
        "data_source_config": {"type": "custom", "item_schema": EVAL_SCHEMA},
        "testing_criteria": [
            {
                "type": "string_check",
                "name": "x",
                "input": "{{item.question}}",
                "reference": "x",
                "operation": "eq",
            }
        ],
    },  # fmt: skip
    ("POST", "/v1/evals/{eval_id}"): {"name": "walk"},
    ("POST", "/v1/evals/{eval_id}/runs"): {
        "data_source": {
            "type": "completions",
            "model": "base",
            "rag": True,
            "input_messages": {"type": "item_reference", "item_reference": "item.question"},
            "source": {"type": "file_content", "content": [{"item": {"question": QUESTION}}]},
        }
    },  # fmt: skip
}
UPLOADS = {
    ("POST", "/v1/project/sources"): {"kind": "docs"},
    ("POST", "/v1/files"): {"purpose": "fine-tune"},
}


def app_routes(routes) -> set[tuple[str, str]]:
    """(method, path) of every route, routers included (FastAPI nests them)."""
    found = set()
    for route in routes:
        if hasattr(route, "effective_candidates"):
            found |= app_routes(route.effective_candidates())
        else:
            for method in getattr(route, "methods", None) or {"GET"}:
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def plant_scorecard(root: Path) -> None:
    """A scorecard whose question rows quote the restricted document, as an eval would."""
    run = root / ".shoptalk" / "evals" / "run-walk"
    run.mkdir(parents=True)
    question = {"suite": "domain", "prompt": QUESTION, "reference": f"Every 42 months ({CANARY})"}
    card = {"run_id": "run-walk", "suites": {}, "questions": [question], "labels": []}
    (run / "scorecard.json").write_text(json.dumps(card), encoding="utf-8")
    (run / "report.html").write_text(f"<p>{CANARY}</p>", encoding="utf-8")
    (root / ".shoptalk" / "latest-run").write_text("run-walk", encoding="utf-8")


def write_data_reports(root: Path) -> Path:
    """The data report of a dataset trained with `hr` (train.groups: [hr]), after one
    without: it names the restricted file and quotes its records as added. Its HTML."""
    from shoptalk.data.report import write_report
    from shoptalk.pipeline import prepare_dataset

    path = root / "shoptalk.yaml"
    config = yaml.safe_load(path.read_text())
    write_report(Project.open(root), prepare_dataset(Project.open(root)))
    path.write_text(yaml.safe_dump(config | {"train": {"groups": ["hr"]}}))
    _, html = write_report(Project.open(root), prepare_dataset(Project.open(root)))
    path.write_text(yaml.safe_dump(config))
    assert SECRET_NAME in html.read_text(encoding="utf-8")
    return html


def plant_data_report(app, root: Path, html: Path) -> None:
    from shoptalk.registry.jobs import BuildRow

    st = app.state.workspace.state_for(None)
    with st.sessions() as session:
        # Dated ahead so it stays the latest report whatever the walk queues (no worker runs).
        session.add(BuildRow(
            id="report-walk", project_root=str(root), kind="report", status="succeeded",
            result={"html": str(html)}, created_at=datetime(2100, 1, 1, tzinfo=timezone.utc),
        ))  # fmt: skip
        # A build that stopped on a broken line of the restricted document: its error and
        # event name the file (absolute, as a SourceError does) and quote the line.
        from shoptalk.registry import jobs as store

        broken = f"SourceError: {root}/docs/hr/{SECRET_NAME}.md:6: unreadable line '{CANARY}'"
        error = {"code": "build_failed", "message": broken, "param": None}
        session.add(BuildRow(id="build-walk", project_root=str(root), status="failed",
                             error=error))  # fmt: skip
        store.add_event(session, "build-walk", broken, level="error")
        session.commit()
    READ_VALUES["build_id"] = "build-walk"


def plant_eval_run(app, client: TestClient) -> None:
    """A finished eval run started by an `hr` editor: its items quote the restricted document.

    The walk reads it (GET routes) by its real ids; other routes get made-up ids, so the
    walk deletes nothing."""
    hr = headers_for(app, frozenset({"editor"}), ["hr"])
    schema = {"type": "object", "properties": {"question": {"type": "string"},
                                               "reference": {"type": "string"}}}  # fmt: skip
    grader = {"type": "string_check", "name": "same", "input": "{{sample.output_text}}",
              "reference": "{{item.reference}}", "operation": "eq"}  # fmt: skip
    # Its name quotes the hr document too: the eval's definition is as restricted as its runs.
    created = client.post("/v1/evals", headers=hr, json={"name": f"laptops ({CANARY})",
        "data_source_config": {"type": "custom", "item_schema": schema,
                               "include_sample_schema": True},
        "testing_criteria": [grader]})  # fmt: skip
    assert created.status_code == 200, created.text
    eval_id = created.json()["id"]
    item = {"question": QUESTION, "reference": f"Every 42 months ({CANARY})"}
    content = [{"item": item, "sample": {"output_text": f"every 42 months, {CANARY}"}}]
    source = {"type": "jsonl", "source": {"type": "file_content", "content": content}}
    run = client.post(f"/v1/evals/{eval_id}/runs", headers=hr, json={"data_source": source})
    assert run.status_code == 200, run.text
    run_id = run.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/evals/{eval_id}/runs/{run_id}", headers=hr).json()["status"] != (
        "completed"
    ):
        assert time.monotonic() < deadline, "the eval run never completed"
        time.sleep(0.2)
    items = client.get(f"/v1/evals/{eval_id}/runs/{run_id}/output_items", headers=hr).json()
    assert CANARY in json.dumps(items)
    # A rating of a grounded answer by an hr chat key, waiting for review.
    rater = headers_for(app, frozenset({"chat"}), ["hr"])
    rating = {"question": QUESTION, "answer": f"Every 42 months ({CANARY})", "rating": "up"}
    assert client.post("/v1/project/feedback", headers=rater, json=rating).status_code == 200
    # And an upload of the same items, named after the restricted document.
    line = json.dumps({"item": item}).encode()
    files = {"file": (f"{SECRET_NAME}.jsonl", line, "application/jsonl")}
    upload = client.post("/v1/files", headers=hr, files=files, data={"purpose": "evals"})
    assert upload.status_code == 200, upload.text
    # A fine-tuning job on it: eval items are no chat rows, so it fails naming the file.
    job = {"model": "base", "training_file": upload.json()["id"]}
    job = client.post("/v1/fine_tuning/jobs", headers=hr, json=job)
    assert job.status_code == 200 and SECRET_NAME in job.text, job.text
    READ_VALUES["job_id"] = job.json()["id"]
    READ_VALUES.update(
        eval_id=eval_id,
        run_id=run_id,
        output_item_id=items["data"][0]["id"],
        file_id=upload.json()["id"],
    )


@pytest.fixture(scope="module")
def walk(tmp_path_factory, tiny_model):
    root = write_project(tmp_path_factory.mktemp("walk") / "p", tiny_model)
    (root / "docs" / "hr").mkdir()
    (root / "docs" / "hr" / f"{SECRET_NAME}.md").write_text(SECRET_DOC, encoding="utf-8")
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["serve"] = {"worker": False}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    index_documents(Project.open(root))
    plant_scorecard(root)
    html = write_data_reports(root)
    app = create_app(root)
    with TestClient(app) as client:
        plant_data_report(app, root, html)
        plant_eval_run(app, client)
        yield app, client


def headers_for(app, scopes: frozenset[str] | None, groups: list[str]) -> dict:
    if scopes is None:
        return {}
    limits = KeyLimits(scopes=sorted(scopes), groups=groups)
    secret = app.state.services.keys.create("walk", limits).secret
    return {"Authorization": f"Bearer {secret}"}


def call(client: TestClient, headers: dict, method: str, path: str):
    # Reads of evals get the planted run's real ids: their answers are searched for leaks.
    values = PATH_VALUES | READ_VALUES if method == "GET" else PATH_VALUES
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    if path == "/console/static":
        url += "/console.js"
    if (method, path) in UPLOADS:
        files = {"file": ("walk.md", b"# walk\n", "text/markdown")}
        return client.request(method, url, headers=headers, files=files, data=UPLOADS[method, path])
    body = BODIES.get((method, path))
    return client.request(method, url, headers=headers, json=body, follow_redirects=False)


def test_the_table_lists_every_route_of_the_app_and_the_docs_agree(walk):
    app, _client = walk
    assert app_routes(app.routes) == set(ROUTES)
    docs = Path(__file__).parents[2] / "docs" / "architecture.md"
    text = docs.read_text(encoding="utf-8")
    table = text[text.index("| role | scopes | routes |") :].split("\n\n")[0]
    documented = {}
    for row in table.splitlines()[2:]:
        role = re.match(r"\| `(\w+)`", row).group(1)
        for method, path in re.findall(r"`(GET|POST|PATCH|DELETE) ([^`]+)`", row):
            documented[method, path] = role
    assert documented == ROUTES
    assert set(ROUTES.values()) <= set(ROLE_SCOPES)


@pytest.mark.parametrize("groups", [[], ["hr"]], ids=["no-groups", "hr"])
@pytest.mark.parametrize("scope", list(SCOPES))
def test_every_route_answers_as_the_table_says_and_leaks_nothing(walk, scope, groups):
    app, client = walk
    scopes = SCOPES[scope]
    headers = headers_for(app, scopes, groups)
    # Only the owner's scope (admin) reads restricted documents whatever its groups:
    # an editor changes the project and starts work, but reads what its groups allow.
    cleared = "hr" in groups or (scopes is not None and bool(OWNER & scopes))
    leaked = []
    for (method, path), role in sorted(ROUTES.items()):
        answer = call(client, headers, method, path)
        where = (scope, groups, method, path, answer.status_code, answer.text[:300])
        if admits(role, scopes):
            assert answer.status_code not in (401, 403), where
            assert answer.status_code < 500 or path.endswith("completions"), where
        else:
            assert answer.status_code == (401 if scopes is None else 403), where
            assert answer.json()["error"]["code"] in ("invalid_api_key", "insufficient_scope")
        if not cleared and any(leak in answer.text for leak in LEAKS):
            leaked.append(where)
    assert not leaked, "\n".join(str(where[:5]) for where in leaked)


def test_a_key_with_the_group_sees_the_restricted_file_and_the_owner_the_scorecard(walk):
    # The leak checks above would pass on an app that served nothing: the same
    # routes do show the restricted document to those cleared for it.
    app, client = walk
    hr = headers_for(app, frozenset({"chat"}), ["hr"])
    assert SECRET_NAME in client.get("/v1/project", headers=hr).text
    owner = headers_for(app, frozenset({"admin"}), [])
    assert SECRET_NAME in client.get("/v1/project", headers=owner).text
    assert CANARY in client.get("/v1/project/scorecard", headers=owner).text
    assert CANARY in client.get("/v1/project/scorecard/report", headers=owner).text
    chat = headers_for(app, frozenset({"chat"}), [])
    card = client.get("/v1/project/scorecard", headers=chat).json()
    assert card["questions"] == [] and card["run_id"] == "run-walk"
    assert card["groups"] == []  # the run names none: trained on documents open to all


@pytest.mark.parametrize("groups", [[], ["hr"]], ids=["no-groups", "hr"])
def test_an_editor_reads_restricted_documents_only_through_its_groups(walk, groups):
    app, client = walk
    editor = headers_for(app, frozenset({"editor", "chat"}), groups)
    listed = SECRET_NAME in client.get("/v1/project", headers=editor).text
    assert listed == ("hr" in groups)
    # The scorecard's rows and its HTML report quote any document: the owner's scope only.
    assert client.get("/v1/project/scorecard", headers=editor).json()["questions"] == []
    assert client.get("/v1/project/scorecard/report", headers=editor).status_code == 403
    # An editor still changes the project (the walk above: no 403 on its routes).
    assert client.patch("/v1/project", headers=editor, json={"name": "Kestrel"}).status_code == 200


def test_retrieval_reads_the_restricted_document_for_the_group_and_the_owner_not_an_editor(walk):
    app, client = walk
    body = BODIES["POST", "/v1/chat/completions"]

    def prompt_tokens(scopes: set[str], groups: list[str]) -> int:
        headers = headers_for(app, frozenset(scopes | {"chat"}), groups)
        return client.post("/v1/chat/completions", headers=headers, json=body).json()["usage"][
            "prompt_tokens"
        ]

    # The laptop section goes into the prompt of those cleared for it, and only theirs.
    cleared = [prompt_tokens({"editor"}, ["hr"]), prompt_tokens({"admin"}, [])]
    assert prompt_tokens({"editor"}, []) + 20 < min(cleared)


def test_retrieval_reads_the_restricted_document_only_for_the_group(walk):
    app, client = walk
    body = BODIES["POST", "/v1/chat/completions"]
    hr = headers_for(app, frozenset({"chat"}), ["hr"])
    other = headers_for(app, frozenset({"chat"}), ["sales"])
    grounded = client.post("/v1/chat/completions", headers=hr, json=body).json()
    refused = client.post("/v1/chat/completions", headers=other, json=body).json()
    # The laptop section went into the hr key's prompt; the other key's found nothing it may read.
    assert grounded["usage"]["prompt_tokens"] > refused["usage"]["prompt_tokens"] + 20


def test_the_data_check_names_a_restricted_files_problems_only_to_those_who_may_read_it(
    tmp_path, tiny_model
):
    root = write_project(tmp_path / "p", tiny_model)
    (root / "docs" / "hr").mkdir()
    broken = SECRET_DOC.replace("groups: [hr]", "groups: [hr]\ntitle: [unclosed")
    (root / "docs" / "hr" / f"{SECRET_NAME}.md").write_text(broken, encoding="utf-8")
    # Its own groups cannot be told (broken front matter): the project's bound it by.
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["rag"] = {"access": {"docs/hr/*": ["hr"]}}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    app = create_app(root)
    with TestClient(app) as client:

        def problems(scopes: set[str], groups: list[str]) -> str:
            headers = headers_for(app, frozenset(scopes), groups)
            answer = client.get("/v1/project/check", headers=headers)
            assert answer.status_code == 200, answer.text
            return json.dumps(answer.json()["problems"])

        hidden = problems({"editor"}, [])
        assert SECRET_NAME not in hidden and "1 problems in files" in hidden
        assert SECRET_NAME in problems({"editor"}, ["hr"])
        assert SECRET_NAME in problems({"admin"}, [])


def test_reports_runs_ratings_and_builds_show_restricted_text_only_to_those_cleared(walk):
    # The walk's leak checks need a positive control: the planted report and run are
    # there, and shown whole to the hr editor who started the run and to the owner.
    app, client = walk
    ids = READ_VALUES
    run = f"/v1/evals/{ids['eval_id']}/runs/{ids['run_id']}"
    routes = [
        f"/v1/evals/{ids['eval_id']}/runs",
        run,
        f"{run}/output_items",
        f"{run}/output_items/{ids['output_item_id']}",
    ]
    for scopes, groups in (({"editor"}, ["hr"]), ({"owner"}, [])):
        cleared = headers_for(app, frozenset(scopes), groups)
        assert CANARY in client.get("/v1/project/feedback/pending", headers=cleared).text
        assert CANARY in client.get("/v1/project/builds/build-walk", headers=cleared).text
        job = client.get(f"/v1/fine_tuning/jobs/{READ_VALUES['job_id']}", headers=cleared)
        assert SECRET_NAME in job.text
        report = client.get("/v1/project/report", headers=cleared)
        assert report.status_code == 200 and SECRET_NAME in report.text, (scopes, groups)
        for route in [f"/v1/evals/{ids['eval_id']}", *routes]:
            assert CANARY in client.get(route, headers=cleared).text, (scopes, route)
    editor = headers_for(app, frozenset({"editor"}), [])
    report = client.get("/v1/project/report", headers=editor)
    assert report.status_code == 200 and "Data report" in report.text
    assert "files this key may not read" in report.text and SECRET_NAME not in report.text
    build = client.get("/v1/project/builds/build-walk", headers=editor).json()
    assert build["status"] == "failed" and "may not read" in build["error"]["message"]
    # The eval itself is the hr key's (its references may quote hr text): none of it exists
    # for this key, runs included.
    listed = client.get("/v1/evals", headers=editor).json()["data"]
    assert ids["eval_id"] not in [e["id"] for e in listed]
    assert client.get(f"/v1/evals/{ids['eval_id']}", headers=editor).status_code == 404
    for route in routes:
        assert client.get(route, headers=editor).status_code == 404
    # Nor can it accept the hr rating into training without having read it.
    hr = headers_for(app, frozenset({"editor"}), ["hr"])
    waiting = client.get("/v1/project/feedback/pending", headers=hr).json()["data"]
    rated = next(f["id"] for f in waiting if CANARY in f["answer"])
    accept = f"/v1/project/feedback/{rated}/accept"
    assert client.post(accept, headers=editor).status_code == 404
    # A key holding other groups than the run's key reads no more of it than one with none.
    sales = headers_for(app, frozenset({"editor"}), ["sales"])
    assert client.get(f"{run}/output_items", headers=sales).status_code == 404


def test_another_keys_upload_is_read_trained_on_and_evaluated_only_by_those_cleared(walk):
    app, client = walk
    file_id = READ_VALUES["file_id"]
    editor = headers_for(app, frozenset({"editor"}), [])
    listed = client.get("/v1/files", headers=editor).json()["data"]
    assert file_id not in [f["id"] for f in listed]
    assert client.get(f"/v1/files/{file_id}/content", headers=editor).status_code == 404
    # Nor through work of its own: an eval run over the file, a fine-tuning job on it.
    source = {"type": "jsonl", "source": {"type": "file_id", "id": file_id}}
    own = client.post("/v1/evals", headers=editor, json=BODIES[("POST", "/v1/evals")])
    assert own.status_code == 200, own.text  # its own eval: only the file is refused
    run = client.post(
        f"/v1/evals/{own.json()['id']}/runs", headers=editor, json={"data_source": source}
    )
    assert run.status_code == 404 and run.json()["error"]["param"] == "data_source.source.id"
    job = {"model": "base", "training_file": file_id}
    assert client.post("/v1/fine_tuning/jobs", headers=editor, json=job).status_code == 404
    for scopes, groups in (({"editor"}, ["hr"]), ({"owner"}, [])):
        cleared = headers_for(app, frozenset(scopes), groups)
        assert client.get(f"/v1/files/{file_id}/content", headers=cleared).status_code == 200
        listed = client.get("/v1/files", headers=cleared).json()["data"]
        assert file_id in [f["id"] for f in listed]
