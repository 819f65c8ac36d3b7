"""A rating carries the groups of what it may quote, so restricted text never reaches
training through feedback (issue 18): the rating key's groups, the groups of the passages
its answer cited, and those of the model that answered; the next build trains it only
when `train.groups` holds them all (`data.feedback.may_train`)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from test_serve_catalog import add_run

from shoptalk.data.dataset import build_dataset
from shoptalk.data.feedback import feedback_path, read_feedback
from shoptalk.project import Project
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_ops_project

QUESTION = "How often do forklift drivers renew their licence?"


@pytest.fixture
def console(tmp_path, tiny_model, one_thread):
    root = write_ops_project(tmp_path / "p", tiny_model)
    # The promoted model was trained for `ops` (its card): what it says may be ops text.
    run_dir = add_run(root, "run-ops", tiny_model, seed=1)
    card = json.loads((run_dir / "card.json").read_text()) | {"groups": ["ops"]}
    (run_dir / "card.json").write_text(json.dumps(card))
    (root / ".shoptalk" / "promoted-run").write_text("run-ops\n", encoding="utf-8")
    app = create_app(root)
    keys = app.state.services.keys

    def bearer(name: str, scopes: list[str], groups: list[str] = ()) -> dict:
        limits = KeyLimits(scopes=scopes, groups=list(groups))
        return {"Authorization": f"Bearer {keys.create(name, limits).secret}"}

    with TestClient(app) as client:
        yield client, root, bearer


def rate(client, headers, answer: str, **extra) -> dict:
    # A question of its own per rating: the dataset keeps one answer per question.
    body = {"question": f"{QUESTION} ({answer})", "answer": answer, "rating": "up"} | extra
    stored = client.post("/v1/project/feedback", headers=headers, json=body)
    assert stored.status_code == 200, stored.text
    return stored.json()


def test_a_rating_carries_the_groups_of_its_key_its_citations_and_its_model(console):
    client, root, bearer = console
    admin = bearer("owner", ["admin"])
    played = client.post(
        "/v1/project/playground",
        headers=admin,
        json={"question": QUESTION, "rag": True, "max_tokens": 4},
    )
    assert played.status_code == 200, played.text
    cited = [c["source"] for c in played.json()["base"]["citations"]]
    assert cited, "the owner's grounded answer cites the ops handbook"
    # The owner reads everything: its rating of a grounded answer carries what the answer cited.
    by_admin = rate(client, admin, "Every 3 years (admin).", sources=cited, model="base")
    # An ops reader's rating may quote ops documents, cited or not.
    by_ops = rate(client, bearer("ops", ["chat"], ["ops"]), "Every 3 years (ops).")
    # The tuned model learnt ops documents: a rating of its answer is ops text too.
    of_model = rate(client, admin, "Every 3 years (model).", model="run-ops")
    open_to_all = rate(client, bearer("editor", ["editor", "chat"]), "Ask your lead.")

    editor = bearer("reviewer", ["editor"], ["ops"])
    accepted = client.post(f"/v1/project/feedback/{by_ops['id']}/accept", headers=editor)
    assert accepted.status_code == 200, accepted.text
    stored = {f.id: f.groups for f in read_feedback(feedback_path(root))}
    assert stored == {
        by_admin["id"]: ["ops"],
        by_ops["id"]: ["ops"],
        of_model["id"]: ["ops"],
        open_to_all["id"]: [],
    }

    project = Project.open(root)
    public = build_dataset(project.config, root, project.datasets)
    trained = {
        c.messages[-1].content for c in public.conversations("train") if "feedback" in c.source
    }
    assert trained == {"Ask your lead."}
    for_ops = project.config.model_copy(deep=True)
    for_ops.train.groups = ["ops"]
    ops_data = build_dataset(for_ops, root, project.datasets)
    trained = {
        c.messages[-1].content for c in ops_data.conversations("train") if "feedback" in c.source
    }
    assert trained == {
        "Ask your lead.",
        "Every 3 years (admin).",
        "Every 3 years (ops).",
        "Every 3 years (model).",
    }
