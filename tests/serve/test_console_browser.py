"""The console in a real headless Chromium (the system's, from apt): it signs in with a key,
talks to the API, speaks Chinese, and makes a project and uploads to it.

`--dump-dom` prints the page after its scripts ran; a probe script added to a
test-only copy of the console page clicks through it and notes each step on <body>.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from fastapi.responses import HTMLResponse

from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.console import STATIC
from shoptalk.serve.server import BackgroundServer

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt install chromium)"
)


def chromium(url: str, *flags: str) -> str:
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            *flags,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def rendered(url: str) -> str:
    return chromium(url, "--dump-dom")


# What every probe starts with: wait for an element, find a button by its text.
HELPERS = r"""
const wait = async (find, what) => {
  for (let i = 0; i < 200; i++) {
    const found = find();
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("never appeared: " + what);
};
const button = (text) => () => [...document.querySelectorAll("button")].find((b) => b.textContent === text);
"""

# Make a project with the form, switch to the served project and back with the
# switcher, and drop an FAQ sheet on the new project's upload zone.
PROBE = (
    HELPERS
    + r"""
const step = (name) => (document.body.dataset.steps = (document.body.dataset.steps || "") + name + " ");
const showing = (name) => () => document.querySelector("main input")?.value === name && document.querySelector(".dropzone");
const switchTo = async (slug, name) => {
  const select = document.querySelector("select.project-switch");
  select.value = slug;
  select.dispatchEvent(new Event("change"));
  return wait(showing(name), name);
};
(async () => {
  try {
    (await wait(() => document.querySelector("button.new-project"), "the New project button")).click();
    const form = await wait(() => document.querySelector("form.new-project"), "the form");
    form.querySelector("input[name=name]").value = "Bakery Nord";
    form.requestSubmit();
    await wait(showing("Bakery Nord"), "the new project");
    step("created");
    await switchTo("served", "Kestrel 物流");
    const zone = await switchTo("bakery-nord", "Bakery Nord");
    step("switched");
    zone.parentElement.querySelector("select").value = "faq";
    const files = new DataTransfer();
    files.items.add(new File(["question,answer\nWhen do you open?,At 6:15.\n"], "bakery.csv", { type: "text/csv" }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));
    await wait(() => document.querySelector(".uploads li"), "the upload's result");
    step("uploaded");
  } catch (error) {
    document.body.dataset.probeError = String(error);
  }
})();
"""
)


# Open the playground tab, accept the rating that waits for review.
REVIEW_PROBE = (
    HELPERS
    + r"""
(async () => {
  try {
    (await wait(button("Playground"), "the Playground tab")).click();
    (await wait(button("Accept for training"), "the review queue")).click();
    await wait(() => document.body.textContent.includes("No feedback waits for review."), "an empty queue");
    document.body.dataset.reviewed = "yes";
  } catch (error) {
    document.body.dataset.probeError = String(error);
  }
})();
"""
)


# Open the scorecard tab; note on <body> whether it offers the full report.
SCORECARD_PROBE = (
    HELPERS
    + r"""
(async () => {
  try {
    (await wait(button("Scorecard"), "the Scorecard tab")).click();
    await wait(() => document.body.textContent.includes("Gate failed"), "the scorecard");
    document.body.dataset.fullReport = button("Open the full report")() ? "shown" : "hidden";
  } catch (error) {
    document.body.dataset.probeError = String(error);
  }
})();
"""
)
PROBES = {"review": REVIEW_PROBE, "scorecard": SCORECARD_PROBE}


def plant_scorecard(root) -> None:
    run = root / ".shoptalk" / "evals" / "run-card"
    run.mkdir(parents=True)
    card = {"run_id": "run-card", "suites": {}, "questions": [], "labels": []}
    (run / "scorecard.json").write_text(json.dumps(card), encoding="utf-8")
    (run / "report.html").write_text("<p>report</p>", encoding="utf-8")
    (root / ".shoptalk" / "latest-run").write_text("run-card", encoding="utf-8")


@pytest.fixture
def console_url(tmp_path):
    (tmp_path / "shoptalk.yaml").write_text("name: Kestrel 物流\n", encoding="utf-8")
    settings = ServeSettings(engine="upstream", upstream_url="http://127.0.0.1:9/v1", worker=False)
    app = create_app(tmp_path, settings=settings)
    keys = app.state.services.keys
    secrets = {
        "editor": keys.create("editor", KeyLimits(scopes=["editor", "chat"])).secret,
        "viewer": keys.create("viewer", KeyLimits(scopes=["chat"])).secret,
        "owner": keys.create("owner", KeyLimits(scopes=["admin"])).secret,
    }
    plant_scorecard(tmp_path)

    # Test-only pages: a browser signs in by putting a key (and a project) in session
    # storage, then opens the console or the console with the probe.
    @app.get("/test-sign-in/{who}/{lang}", include_in_schema=False)
    def sign_in(who: str, lang: str, project: str = "", then: str = "/console") -> HTMLResponse:
        key = secrets.get(who, "sk-st-wrong")
        chosen = f"sessionStorage.setItem('shoptalk.project', '{project}');" if project else ""
        return HTMLResponse(
            f"<script>sessionStorage.setItem('shoptalk.key', '{key}');{chosen}"
            f"localStorage.setItem('shoptalk.lang', '{lang}'); location.href = '{then}';</script>"
        )

    @app.get("/test-probe", include_in_schema=False)
    def probed_console(probe: str = "") -> HTMLResponse:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        script = PROBES.get(probe, PROBE)
        return HTMLResponse(page.replace("</body>", f"<script>{script}</script></body>"))

    @app.get("/test-key/{who}", include_in_schema=False)
    def test_key(who: str) -> str:
        return secrets[who]

    with BackgroundServer(app) as url:
        yield url


def test_an_editor_sees_the_project_in_chinese(console_url):
    dom = rendered(f"{console_url}/test-sign-in/editor/zh")
    assert "<title>shoptalk 控制台</title>" in dom
    assert 'value="Kestrel 物流"' in dom, "the project came from the API"
    assert "把文档、FAQ 表格或聊天记录拖到这里" in dom, "editors get the upload zone"
    assert "退出" in dom


def test_a_viewer_reads_only_and_a_bad_key_is_sent_back_to_sign_in(console_url):
    viewer = rendered(f"{console_url}/test-sign-in/viewer/en")
    assert "Read only" in viewer and "Drop documents" not in viewer
    assert "project-switch" in viewer and "New project" not in viewer, "viewers switch, never make"
    refused = rendered(f"{console_url}/test-sign-in/nobody/en")
    assert "API key (admin or editor" in refused and "Sign in" in refused


def test_an_editor_makes_a_project_switches_to_it_and_uploads_there(console_url, tmp_path):
    dom = rendered(f"{console_url}/test-sign-in/editor/en?then=/test-probe")
    assert "data-probe-error" not in dom, dom[-2000:]
    assert 'data-steps="created switched uploaded "' in dom
    assert "Uploaded: uploads/faq/bakery.csv" in dom
    made = tmp_path / ".shoptalk" / "projects" / "bakery-nord"
    assert (
        made / "uploads" / "faq" / "bakery.csv"
    ).read_text() == "question,answer\nWhen do you open?,At 6:15.\n"
    assert not (tmp_path / "uploads").exists(), "nothing landed in the served project"

    shot = tmp_path / "console-new-project.png"
    chromium(
        f"{console_url}/test-sign-in/editor/en?project=bakery-nord",
        f"--screenshot={shot}",
        "--window-size=1280,900",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_an_editor_accepts_a_viewers_rating_in_the_review_queue(console_url, tmp_path):
    import httpx

    rating = {"question": "When?", "answer": "At 9.", "rating": "down", "correction": "At 6."}
    with httpx.Client(base_url=console_url) as client:
        viewer = {"Authorization": f"Bearer {client.get('/test-key/viewer').json()}"}
        stored = client.post("/v1/project/feedback", json=rating, headers=viewer).json()
    assert stored["pending_review"]
    dom = rendered(f"{console_url}/test-sign-in/editor/en?then=/test-probe%3Fprobe%3Dreview")
    assert "data-probe-error" not in dom, dom[-2000:]
    assert 'data-reviewed="yes"' in dom
    lines = (tmp_path / ".shoptalk" / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and "At 6." in lines[0]


@pytest.mark.parametrize(("who", "offered"), [("editor", "hidden"), ("owner", "shown")])
def test_only_the_owner_is_offered_the_full_scorecard_report(console_url, who, offered):
    # The report is for the owner's scope only (GET /v1/project/scorecard/report is 403 to
    # an editor): no button that could only fail.
    probe = "/test-probe%3Fprobe%3Dscorecard"
    dom = rendered(f"{console_url}/test-sign-in/{who}/en?then={probe}")
    assert "data-probe-error" not in dom, dom[-2000:]
    assert f'data-full-report="{offered}"' in dom
