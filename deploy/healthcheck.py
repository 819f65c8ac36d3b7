"""Exit 0 if the API on this machine answers /health, else 1 (Docker's HEALTHCHECK).

    python deploy/healthcheck.py [URL]

Without a URL: $SHOPTALK_HEALTH_URL, else https then http on 127.0.0.1:$SHOPTALK_PORT (8000).

It only ever talks to the local server, so a self-signed certificate is fine:
the check skips certificate verification for 127.0.0.1 and nothing else.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request
from urllib.parse import urlparse

PORT = os.environ.get("SHOPTALK_PORT", "8000")
DEFAULT_URLS = [f"https://127.0.0.1:{PORT}/health", f"http://127.0.0.1:{PORT}/health"]


def healthy(url: str) -> bool:
    context = None
    if urlparse(url).scheme == "https" and urlparse(url).hostname in ("127.0.0.1", "localhost"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    from_env = os.environ.get("SHOPTALK_HEALTH_URL")
    urls = argv[1:] or ([from_env] if from_env else DEFAULT_URLS)
    return 0 if any(healthy(url) for url in urls) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
