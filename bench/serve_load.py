"""Serving under load: .venv/bin/python bench/serve_load.py [--requests 32] [--max-tokens 32] [--tiny]

Starts `shoptalk serve` as its own process on 127.0.0.1 (the default base
model, or a tiny random one with --tiny) with an API key, then drives it with
the official openai client, streaming so time-to-first-token is measured:

1. the same N chat requests one at a time, then from 8 concurrent clients:
   throughput (completion tokens/s) of each and their ratio (target >= 3x),
   p50/p99 latency and time to first token;
2. 3x capacity (capacity = max_batch_size running + max_queue waiting): that
   many clients at once. Refusals (503, or 429 from a key's limits) must come
   back fast, and /health must keep answering quickly throughout.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai
import yaml

from shoptalk.registry.keys import KeyLimits, KeyStore
from shoptalk.serve.server import free_port
from shoptalk.serve.services import registry

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What is the claim window for damaged parcels?",
    "Who runs the Oslo depot?",
    "退货期限是多少天？",
    "How much is the pallet fee?",
    "When does support open on weekdays?",
    "Where do I send claims?",
    "请问冷链货物用哪个等级？",
    "How often do forklift drivers renew their licence?",
]
MAX_BATCH, MAX_QUEUE = 8, 8


def write_project(root: Path, tiny: bool) -> tuple[Path, str]:
    """A project with no sources (serving needs none) and one unlimited key."""
    base = "default"
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model

        base = str(build_tiny_model(root / "tiny-model"))
    config = {
        "name": "Bench",
        "base_model": base,
        "serve": {
            "max_batch_size": MAX_BATCH,
            "max_queue": MAX_QUEUE,
            "batch_wait_ms": 10,
            # On a shared machine the sequential baseline itself can take minutes.
            "request_timeout_s": 3600,
        },
    }
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    from shoptalk.project import Project

    project = Project.open(root)
    store = KeyStore(registry(project.config.serve, project.state))
    return root, store.create("bench", KeyLimits(scopes=["chat", "admin"])).secret


def start_server(project: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "shoptalk.cli", "serve", str(project), "--port", str(port)]
    server = subprocess.Popen(command)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


def one_request(client: openai.OpenAI, question: str, max_tokens: int) -> dict:
    """Latency, time to first token, tokens and status of one streamed chat request."""
    start = time.monotonic()
    first, tokens = None, 0
    try:
        stream = client.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": question}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.monotonic() - start
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        status = 200
    except openai.APIStatusError as exc:
        status = exc.status_code
    except openai.APIError:  # an error event inside a stream that had started (e.g. 504)
        status = "stream error"
    return {
        "status": status,
        "latency": time.monotonic() - start,
        "ttft": first,
        "tokens": tokens,
    }


def run_clients(client, questions: list[str], clients: int, max_tokens: int) -> tuple[list, float]:
    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda q: one_request(client, q, max_tokens), questions))
    return results, time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(name: str, results: list[dict], seconds: float) -> float:
    ok = [r for r in results if r["status"] == 200]
    tokens = sum(r["tokens"] for r in ok)
    latencies = [r["latency"] for r in ok]
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    print(
        f"{name}: {len(ok)}/{len(results)} ok in {seconds:.1f}s, {tokens / seconds:.1f} tokens/s, "
        f"{len(ok) / seconds:.2f} req/s; latency p50 {percentile(latencies, 50):.2f}s "
        f"p99 {percentile(latencies, 99):.2f}s; first token p50 {percentile(ttfts, 50):.2f}s "
        f"p99 {percentile(ttfts, 99):.2f}s"
    )
    return tokens / seconds


def overload(client, url: str, max_tokens: int) -> None:
    """3x capacity at once, while a probe times /health every 100 ms."""
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            start = time.monotonic()
            ok = httpx.get(url + "/health", timeout=30).status_code == 200
            health.append(time.monotonic() - start if ok else float("inf"))
            time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    clients = 3 * (MAX_BATCH + MAX_QUEUE)
    questions = (QUESTIONS * clients)[:clients]
    results, seconds = run_clients(client, questions, clients, max_tokens)
    stop.set()
    prober.join()
    refused = [r["latency"] for r in results if r["status"] in (429, 503)]
    statuses = {s: sum(r["status"] == s for r in results) for s in {r["status"] for r in results}}
    print(f"overload: {clients} clients at once, statuses {statuses}, all done in {seconds:.1f}s")
    if refused:
        print(
            f"  refusals answered in p50 {percentile(refused, 50) * 1000:.0f} ms, "
            f"max {max(refused) * 1000:.0f} ms"
        )
    print(
        f"  /health: {len(health)} probes, all OK: {all(h != float('inf') for h in health)}, "
        f"p50 {percentile(health, 50) * 1000:.0f} ms, max {max(health) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--tiny", action="store_true", help="A tiny random model, not the default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, key = write_project(Path(tmp), args.tiny)
        port = free_port()
        server = start_server(project, port)
        url = f"http://127.0.0.1:{port}"
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=600)
        try:
            one_request(client, "warm up", 4)
            questions = (QUESTIONS * args.requests)[: args.requests]
            sequential = summary("1 client ", *run_clients(client, questions, 1, args.max_tokens))
            concurrent = summary("8 clients", *run_clients(client, questions, 8, args.max_tokens))
            print(f"throughput ratio 8 clients / 1 client: {concurrent / sequential:.2f}x")
            overload(client, url, args.max_tokens)
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
