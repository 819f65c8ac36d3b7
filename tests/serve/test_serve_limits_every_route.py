"""Issue 18 bar "one limiter and one audit path": the barrier bursts that hold on the chat
API hold the same way on the console's playground (with and without retrieval) and on
retrieval through the chat API (`rag: true`), and each request leaves exactly one audit
row, refusals included. Every route reaches the limiter through `serve.calls.Call`.

The project has a promoted run, so the playground asks two models (base and tuned) per
question: still one request against the key's limits and one audit row. A request with
retrieval is admitted before anything is retrieved: a key over its limits gets none."""

from __future__ import annotations

import threading

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_serve_catalog import add_run

from shoptalk.pipeline import index_documents
from shoptalk.project import Project
from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_project

QUESTION = "How often do forklift drivers renew their licence?"
TUNED = "run-limits"
BURST = 8
ADMITTED = 3


@pytest.fixture(scope="module")
def console(tmp_path_factory, tiny_model):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = write_project(tmp_path_factory.mktemp("limits") / "p", tiny_model)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    config["rag"] = {"access": {"docs/*": ["ops"]}}
    config["serve"] = {"worker": False, "max_tokens_limit": 12}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config))
    index_documents(Project.open(root))
    add_run(root, TUNED, tiny_model, seed=5)
    (root / ".shoptalk" / "promoted-run").write_text(f"{TUNED}\n", encoding="utf-8")
    app = create_app(root)
    with TestClient(app) as client:
        yield client, app
    torch.set_num_threads(threads)


# Each route as the console or a client asks it; `readable` = whether retrieval finds
# something the key may read (the model is asked) or nothing (answered without it).
ROUTES = {
    "playground": ("/v1/project/playground", {"question": QUESTION}),
    "playground+rag": ("/v1/project/playground", {"question": QUESTION, "rag": True}),
    "chat+rag": (
        "/v1/chat/completions",
        {
            "model": "base",
            "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0,
            "rag": True,
        },
    ),
}


def make_key(app, name: str, **limits) -> tuple[str, dict]:
    limits = {"scopes": ["chat"], "groups": ["ops"]} | limits
    key = app.state.services.keys.create(name, KeyLimits(**limits))
    return key.key.id, {"Authorization": f"Bearer {key.secret}"}


def post(client, route: str, headers: dict, max_tokens: int):
    path, body = ROUTES[route]
    return client.post(path, headers=headers, json=body | {"max_tokens": max_tokens})


def burst(client, route: str, headers: dict, max_tokens: int) -> list:
    """`BURST` requests released by one barrier; their responses."""
    barrier = threading.Barrier(BURST)
    results: list = [None] * BURST

    def one(i: int) -> None:
        barrier.wait()
        results[i] = post(client, route, headers, max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def audit_rows(app, key_id: str) -> list[AuditRow]:
    with app.state.services.audit.sessions() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.key_id == key_id)))


def check_burst(app, route: str, key_id: str, results: list) -> list:
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * ADMITTED + [429] * (BURST - ADMITTED), [r.text for r in results]
    refusals = [r for r in results if r.status_code == 429]
    for refused in refusals:
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
    rows = audit_rows(app, key_id)
    assert sorted(r.status for r in rows) == statuses  # one row per request, refusals too
    assert {r.route for r in rows} == {ROUTES[route][0]}
    return refusals


def models_of(route: str) -> int:
    """The models one request asks: the playground asks the base and the promoted model."""
    return 2 if route.startswith("playground") else 1


def budget_of(client, app, route: str, max_tokens: int) -> int:
    """What one request reserves: its prompts plus `max_tokens` per model asked (a greedy
    answer on the tiny model runs to max_tokens, so it also uses exactly that)."""
    key_id, headers = make_key(app, f"probe-{route}-{max_tokens}")
    assert post(client, route, headers, max_tokens).status_code == 200
    (row,) = audit_rows(app, key_id)
    assert row.completion_tokens == max_tokens * models_of(route)
    return row.prompt_tokens + row.completion_tokens


@pytest.mark.parametrize("route", ["playground", "playground+rag"])
def test_a_playground_question_to_two_models_is_one_request_and_one_audit_row(console, route):
    client, app = console
    key_id, headers = make_key(app, f"two-{route}", rpm=2)
    answered = [post(client, route, headers, 2) for _ in range(3)]
    assert [a.status_code for a in answered] == [200, 200, 429], [a.text for a in answered]
    assert answered[0].json()["tuned"]["model"] == TUNED
    rows = audit_rows(app, key_id)
    assert [r.status for r in rows] == [200, 200, 429]
    assert rows[0].model == f"base+{TUNED}" and rows[0].completion_tokens == 2 * 2


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_barrier_rpm_exactly_k_of_n_on_every_route(console, route):
    client, app = console
    key_id, headers = make_key(app, f"rpm-{route}", rpm=ADMITTED)
    check_burst(app, route, key_id, burst(client, route, headers, 2))


@pytest.mark.parametrize("route", ["playground+rag", "chat+rag"])
def test_barrier_rpm_holds_when_retrieval_finds_nothing_readable(console, route):
    client, app = console
    key_id, headers = make_key(app, f"rpm-none-{route}", rpm=ADMITTED, groups=["sales"])
    results = burst(client, route, headers, 2)
    check_burst(app, route, key_id, results)
    admitted = [r.json() for r in results if r.status_code == 200]
    answers = [
        a["base"]["answer"] if "base" in a else a["choices"][0]["message"]["content"]
        for a in admitted
    ]
    assert all("could not find" in answer for answer in answers)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("window", ["tpm", "tokens_per_day"])
def test_barrier_token_limits_exactly_k_of_n_on_every_route(console, route, window):
    client, app = console
    budget = budget_of(client, app, route, 4)
    limit = ADMITTED * budget + budget // 2
    key_id, headers = make_key(app, f"{window}-{route}", **{window: limit})
    refusals = check_burst(app, route, key_id, burst(client, route, headers, 4))
    if window == "tokens_per_day":
        assert "Daily quota" in refusals[0].json()["error"]["message"]
    rows = audit_rows(app, key_id)
    used = sum(r.prompt_tokens + r.completion_tokens for r in rows if r.status == 200)
    assert used == ADMITTED * budget <= limit
    assert all(r.completion_tokens == 0 for r in rows if r.status == 429)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_max_tokens_limit_is_refused_and_audited_on_every_route(console, route):
    client, app = console
    key_id, headers = make_key(app, f"long-{route}")
    refused = post(client, route, headers, 100)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "max_tokens_too_large"
    assert [r.status for r in audit_rows(app, key_id)] == [400]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_max_tokens_limit_holds_when_retrieval_finds_nothing_readable(console, route):
    client, app = console
    key_id, headers = make_key(app, f"long-none-{route}", groups=["sales"])
    refused = post(client, route, headers, 100)
    assert refused.status_code == 400
    assert [r.status for r in audit_rows(app, key_id)] == [400]


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("groups", [["ops"], ["sales"]])
def test_the_model_allow_list_is_refused_and_audited_on_every_route(console, route, groups):
    client, app = console
    key_id, headers = make_key(
        app, f"tuned-only-{route}-{groups[0]}", models=["shoptalk"], groups=groups
    )
    refused = post(client, route, headers, 2)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert [r.status for r in audit_rows(app, key_id)] == [403]


@pytest.fixture
def searches(console, monkeypatch):
    """How many times retrieval searched the served project's index."""
    from shoptalk.serve.grounding import project_index

    _client, app = console
    index = project_index(app)
    count = [0]
    search = index.search

    def counted(*args, **kwargs):
        count[0] += 1
        return search(*args, **kwargs)

    monkeypatch.setattr(index, "search", counted)
    return count


@pytest.mark.parametrize("route", ["playground+rag", "chat+rag"])
@pytest.mark.parametrize("limit", ["rpm", "tokens_per_day"])
def test_a_key_over_its_limits_gets_no_retrieval_done(console, searches, route, limit):
    client, app = console
    budget = budget_of(client, app, route, 2)
    # One request fits, the next does not: one per minute, or a day's tokens for one.
    key_id, headers = make_key(
        app, f"over-{limit}-{route}", **{limit: 1 if limit == "rpm" else budget}
    )
    before = searches[0]
    assert post(client, route, headers, 2).status_code == 200
    assert searches[0] == before + 1, "one search per request, the playground's two models too"
    refused = post(client, route, headers, 2)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert searches[0] == before + 1, "the refused request retrieved nothing"
    assert "18 months" not in refused.text and "citations" not in refused.text
    assert [r.status for r in audit_rows(app, key_id)] == [200, 429]
