"""The console in a real headless Chromium (the system's, from apt): it signs in with a key,
talks to the API, and speaks Chinese."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fastapi.responses import HTMLResponse

from shoptalk.config import ServeSettings
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.app import create_app
from shoptalk.serve.server import BackgroundServer

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt install chromium)")


def rendered(url: str) -> str:
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@pytest.fixture
def console_url(tmp_path):
    (tmp_path / "shoptalk.yaml").write_text("name: Kestrel 物流\n", encoding="utf-8")
    settings = ServeSettings(engine="upstream", upstream_url="http://127.0.0.1:9/v1", worker=False)
    app = create_app(tmp_path, settings=settings)
    keys = app.state.services.keys
    secrets = {
        "editor": keys.create("editor", KeyLimits(scopes=["editor", "chat"])).secret,
        "viewer": keys.create("viewer", KeyLimits(scopes=["chat"])).secret,
    }

    # Test-only page: a browser signs in by putting a key in session storage.
    @app.get("/test-sign-in/{who}/{lang}", include_in_schema=False)
    def sign_in(who: str, lang: str) -> HTMLResponse:
        key = secrets.get(who, "sk-st-wrong")
        return HTMLResponse(
            f"<script>sessionStorage.setItem('shoptalk.key', '{key}');"
            f"localStorage.setItem('shoptalk.lang', '{lang}'); location.href = '/console';</script>"
        )

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
    refused = rendered(f"{console_url}/test-sign-in/nobody/en")
    assert "API key (admin or editor" in refused and "Sign in" in refused
