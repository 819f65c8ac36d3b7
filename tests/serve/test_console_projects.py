"""Projects made in the console: created in the server's workspace, listed after the
served one, chosen per request with the X-Shoptalk-Project header, and built by the
server's worker on their own data."""

from __future__ import annotations

import csv
import io
import time

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from shoptalk.config import ServeSettings
from shoptalk.project import Project
from shoptalk.registry.db import connect
from shoptalk.registry.jobs import BuildRow, add_missing_columns, builds_of
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app

from projects import write_project

BAKERY_FAQ = [
    ("When does the bakery open?", "The bakery opens at 6:15."),
    ("Which bread is gluten free?", "Only the Tarnby rye loaf is gluten free."),
    ("How much is a croissant?", "A croissant costs 3 crowns."),
    ("Who bakes on Sundays?", "Mette Holm bakes on Sundays."),
    ("Do you deliver?", "We deliver within 4 kilometres."),
    ("Where is the bakery?", "The bakery is at Fjordgade 12."),
]


@pytest.fixture
def console(tmp_path, tiny_model):
    root = write_project(tmp_path / "served", tiny_model)
    settings = ServeSettings(engine="upstream", upstream_url="http://127.0.0.1:9/v1")
    app = create_app(root, settings=settings)
    keys = app.state.services.keys
    editor = keys.create("editor", KeyLimits(scopes=["editor", "chat"])).secret
    viewer = keys.create("viewer", KeyLimits(scopes=["chat"])).secret
    owner = keys.create("owner", KeyLimits(scopes=["admin"])).secret
    with TestClient(app) as client:
        yield {
            "client": client,
            "root": root,
            "model": tiny_model.name,
            "model_path": tiny_model.resolve(),
            "editor": {"Authorization": f"Bearer {editor}"},
            "viewer": {"Authorization": f"Bearer {viewer}"},
            "owner": {"Authorization": f"Bearer {owner}"},
        }


def create(console, **body):
    body = {"name": "Bakery", "base_model": console["model"]} | body
    return console["client"].post("/v1/projects", headers=console["editor"], json=body)


def in_project(console, slug: str, who: str = "editor") -> dict:
    return console[who] | {"X-Shoptalk-Project": slug}


def faq_csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["question", "answer"])
    writer.writerows(rows)
    return out.getvalue().encode()


def test_create_then_list_with_the_served_project_first(console):
    made = create(console, name="Bakery Nord", system_prompt="You are the bakery's assistant.")
    assert made.status_code == 201, made.text
    assert made.json()["slug"] == "bakery-nord" and made.json()["base_model"] == console["model"]
    listing = console["client"].get("/v1/projects", headers=console["viewer"]).json()
    assert [p["slug"] for p in listing["data"]] == ["served", "bakery-nord"]
    assert listing["data"][0]["served"] and listing["data"][0]["name"] == "Kestrel"
    assert console["model"] in listing["base_models"]
    # An ordinary project folder, inside the served project's state folder.
    project = Project.open(console["root"] / ".shoptalk" / "projects" / "bakery-nord")
    assert project.config.name == "Bakery Nord"
    assert project.config.system_prompt == "You are the bakery's assistant."
    assert project.config.base_model == str(console["model_path"])


def test_a_chinese_name_gets_a_numbered_slug(console):
    made = create(console, name="北方面包店")
    assert made.json()["slug"] == "project-1" and made.json()["name"] == "北方面包店"


def test_never_overwrites_and_refuses_bad_slugs_models_and_viewers(console):
    assert create(console, slug="bakery").status_code == 201
    config = console["root"] / ".shoptalk" / "projects" / "bakery" / "shoptalk.yaml"
    before = config.read_text(encoding="utf-8")
    again = create(console, slug="bakery", name="Other")
    assert again.status_code == 409 and "bakery" in again.json()["error"]["message"]
    assert config.read_text(encoding="utf-8") == before
    assert create(console, slug="served").status_code == 409
    for slug in ("../evil", "Bakery", "a/b", ".hidden", ""):
        refused = create(console, slug=slug)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "slug", slug
    assert not (console["root"] / ".shoptalk" / "evil").exists()
    unknown = create(console, slug="x", base_model="gpt-5")
    assert unknown.status_code == 400 and console["model"] in unknown.json()["error"]["message"]
    viewer = console["client"].post(
        "/v1/projects", headers=console["viewer"], json={"name": "X", "base_model": "default"}
    )
    assert viewer.status_code == 403
    assert console["client"].get("/v1/projects").status_code == 401


def test_an_unknown_project_header_is_a_404_naming_the_known_ones(console):
    create(console, slug="bakery")
    client = console["client"]
    for slug in ("nope", "../served", "..", "bakery/../.."):
        missing = client.get("/v1/project", headers=in_project(console, slug, "viewer"))
        assert missing.status_code == 404, slug
        assert "served, bakery" in missing.json()["error"]["message"]
    served = client.get("/v1/project", headers=in_project(console, "served", "viewer"))
    assert served.json()["name"] == "Kestrel"


def test_sources_uploaded_to_one_project_stay_in_it(console):
    create(console, slug="bakery")
    client = console["client"]
    files = {"file": ("faq.csv", faq_csv(BAKERY_FAQ), "text/csv")}
    up = client.post(
        "/v1/project/sources",
        headers=in_project(console, "bakery"),
        files=files,
        data={"kind": "faq"},
    )
    assert up.status_code == 200, up.text
    bakery = client.get("/v1/project", headers=in_project(console, "bakery", "viewer")).json()
    served = client.get("/v1/project", headers=console["viewer"]).json()
    assert [s["path"] for s in bakery["sources"]] == ["uploads/faq/faq.csv"]
    assert "uploads/faq/faq.csv" not in [s["path"] for s in served["sources"]]
    assert not (console["root"] / "uploads").exists()
    check = client.get("/v1/project/check", headers=in_project(console, "bakery")).json()
    assert check["counts"]["FAQ rows"] == len(BAKERY_FAQ)
    # Renaming one project leaves the other alone.
    client.patch("/v1/project", headers=in_project(console, "bakery"), json={"name": "Bakery Syd"})
    names = [
        p["name"] for p in client.get("/v1/projects", headers=console["viewer"]).json()["data"]
    ]
    assert names == ["Kestrel", "Bakery Syd"]


def test_a_build_of_a_made_project_runs_its_data_and_scores_it(console):
    create(console, slug="bakery")
    client, bakery = console["client"], in_project(console, "bakery")
    root = console["root"] / ".shoptalk" / "projects" / "bakery"
    small = {"epochs": 1, "max_seq_len": 128, "tokens_per_step": 256, "method": "lora"}
    config = yaml.safe_load((root / "shoptalk.yaml").read_text(encoding="utf-8"))
    # Test speed only: the defaults are for real models.
    config["train"] |= small | {"lora": {"r": 4, "alpha": 8}}
    config["eval"] |= {"max_new_tokens": 8, "retention": False}
    config["data"] |= {"question_variants": 1}
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    files = {"file": ("faq.csv", faq_csv(BAKERY_FAQ), "text/csv")}
    client.post("/v1/project/sources", headers=bakery, files=files, data={"kind": "faq"})

    started = client.post("/v1/project/builds", headers=bakery).json()
    assert client.get("/v1/project/builds", headers=console["editor"]).json() == []
    assert (
        client.get(f"/v1/project/builds/{started['id']}", headers=console["editor"]).status_code
        == 404
    )
    for _ in range(600):
        build = client.get(f"/v1/project/builds/{started['id']}", headers=bakery).json()
        if build["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert build["status"] == "succeeded", build
    # The per-question rows may quote any document: the owner's scope reads them.
    assert client.get("/v1/project/scorecard", headers=bakery).json()["questions"] == []
    owner = in_project(console, "bakery", who="owner")
    card = client.get("/v1/project/scorecard", headers=owner).json()
    asked = {q["prompt"] for q in card["questions"]}
    assert asked and asked <= {q for q, _ in BAKERY_FAQ}, "held out from the bakery's FAQ"
    assert (root / ".shoptalk" / "evals" / card["run_id"] / "scorecard.json").is_file()
    assert client.get("/v1/project/scorecard", headers=console["viewer"]).status_code == 404
    listing = client.get("/v1/projects", headers=console["viewer"]).json()["data"]
    assert listing[1]["latest_run"] == card["run_id"] and listing[0]["latest_run"] is None


def test_a_registry_from_before_projects_gets_the_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with create_engine(url).begin() as db:
        db.execute(
            text(
                "CREATE TABLE builds (id VARCHAR(40) PRIMARY KEY, status VARCHAR(20), "
                "requested VARCHAR(20), stage VARCHAR(20), run_path TEXT, error JSON, "
                "key_id VARCHAR(32), worker_pid INTEGER, created_at DATETIME, finished_at DATETIME)"
            )
        )
        db.execute(text("INSERT INTO builds (id, status) VALUES ('build-old', 'succeeded')"))
    sessions = connect(url)
    add_missing_columns(sessions)
    add_missing_columns(sessions)  # once is enough; again is harmless
    with sessions() as session:
        assert session.get(BuildRow, "build-old").project_root is None
        served = session.scalars(select(BuildRow.id).where(builds_of("/srv/a", served=True)))
        made = session.scalars(select(BuildRow.id).where(builds_of("/srv/a/b", served=False)))
        assert list(served) == ["build-old"] and list(made) == [], (
            "older builds were the served project's"
        )
