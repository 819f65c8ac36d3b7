"""`shoptalk serve DIR`: the API under uvicorn, safe by default.

It binds 127.0.0.1 unless told otherwise, and refuses any address other
machines can reach without TLS (or an explicit `--insecure`): API keys travel
in every request's headers. On SIGTERM/Ctrl-C uvicorn stops accepting, lets
in-flight requests finish, then the app stops its model worker.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from pathlib import Path

from shoptalk.config import ServeSettings
from shoptalk.errors import ConfigError


class BindRefused(ConfigError):
    """The server's own address is not personal data: the CLI prints it unredacted."""

    personal_data = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: ServeSettings, insecure: bool) -> None:
    """Raise unless `host` is loopback, TLS is configured, or the user said --insecure."""
    has_tls = bool(settings.tls_certfile and settings.tls_keyfile)
    if is_loopback(host) or has_tls or insecure:
        return
    raise BindRefused(
        f"Refusing to serve on {host}: other machines could reach it and API keys would "
        "cross the network in clear text. Set serve.tls_certfile and serve.tls_keyfile in "
        "shoptalk.yaml, put a TLS proxy in front and bind 127.0.0.1, or pass --insecure."
    )


def serve(
    project_dir: Path,
    host: str | None = None,
    port: int | None = None,
    insecure: bool = False,
    worker: bool | None = None,
) -> None:
    """Run the API until interrupted; `worker` overrides `serve.worker`."""
    import uvicorn

    from shoptalk.project import Project
    from shoptalk.serve.app import create_app

    settings = Project.open(project_dir).config.serve
    if worker is not None:
        settings = settings.model_copy(update={"worker": worker})
    host = host or settings.host
    check_bind(host, settings, insecure)
    # Everything the server and its worker write (registry, uploads, feedback, logs,
    # runs) is its owner's alone: 0600 files, 0700 folders.
    os.umask(0o077)
    app = create_app(project_dir, settings=settings)
    uvicorn.run(app, **uvicorn_options(settings, host, port or settings.port))


def uvicorn_options(settings: ServeSettings, host: str, port: int) -> dict:
    return {
        "host": host,
        "port": port,
        "ssl_certfile": settings.tls_certfile,
        "ssl_keyfile": settings.tls_keyfile,
        # The audit log records every request (without secrets); uvicorn's access
        # log would add client addresses and paths to a file nobody rotates.
        "access_log": False,
        "timeout_graceful_shutdown": settings.request_timeout_s,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """Uvicorn in a thread on 127.0.0.1, for tests and benchmarks: `with BackgroundServer(app) as url:`."""

    def __init__(self, app, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"The server on port {self.port} failed to start")
            threading.Event().wait(0.02)
        return self.url

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
