"""Serving under load: .venv/bin/python bench/serve_load.py [--requests 32] [--max-tokens 32] [--tiny]

Starts `shoptalk serve` as its own process on 127.0.0.1 (the default base
model, or a tiny random one with --tiny) with an API key, then drives it with
the official openai client, streaming so time-to-first-token is measured:

1. for each engine (--engines): the same N chat requests one at a time, then
   from 8 concurrent clients (each case also stops after --seconds):
   throughput (completion tokens/s) of each and their ratio (target >= 3x),
   p50/p99 latency and time to first token. The transformers engine answers
   the base model; the llamacpp engine answers GGUF exports of it
   (--quants, converted first with shoptalk's own converter and served as
   `<run>-gguf-<quant>` of a run holding the base weights), one server per
   --contexts value (serve.llamacpp_contexts);
2. the memory-bandwidth bound of each weight type: the bytes of weights one
   decoded token reads, against the measured read bandwidth of this machine;
3. 3x capacity (capacity = max_batch_size running + max_queue waiting): that
   many clients at once (--overload). Refusals (503, or 429 from a key's
   limits) must come back fast, and /health must keep answering quickly.
"""

from __future__ import annotations

import argparse
import os
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
RUN_ID = "run-bench-base"


def write_project(root: Path, tiny: bool, contexts: int = 1) -> tuple[Path, str]:
    """A project with no sources (serving needs none) and one unlimited key."""
    root.mkdir(parents=True, exist_ok=True)
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
            "llamacpp_contexts": contexts,
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


def add_gguf_exports(project_dir: Path, quants: list[str]) -> list[str]:
    """GGUF exports of the base model, laid out as `shoptalk export` lays out a run's.

    The run is the base weights themselves (a full run linking the base's
    files), so the transformers engine's `base` and the exports hold the same
    model. Returns the served names, `<run>-gguf-<quant>`.
    """
    from shoptalk.artifacts import RunArtifact, write_json
    from shoptalk.export.gguf import convert
    from shoptalk.modeling.load import resolve_base_model
    from shoptalk.project import Project

    project = Project.open(project_dir)
    base = Path(resolve_base_model(project.config.base_model, project.root))
    run = RunArtifact(path=project.runs / RUN_ID, run_id=RUN_ID)
    run.final.mkdir(parents=True)
    for file in base.iterdir():
        (run.final / file.name).symlink_to(file.resolve())
    write_json(run.path / "card.json", {"base_model": "default", "base_path": str(base)})
    project.promote(run)
    exports = project.exports / RUN_ID
    exports.mkdir(parents=True)
    (exports / "hf").symlink_to(run.final)
    names = []
    for quant in quants:
        start = time.monotonic()
        (exports / f"gguf-{quant}").mkdir()
        out = convert(exports / "hf", exports / f"gguf-{quant}" / f"model-{quant}.gguf", quant)
        print(f"gguf {quant}: {out.stat().st_size:,} bytes in {time.monotonic() - start:.0f}s")
        names.append(f"{RUN_ID}-gguf-{quant}")
    return names


def weight_bytes_per_token(project_dir: Path, model: str) -> int:
    """Bytes of weights one decode step reads: every tensor but the embedding table.

    An embedding lookup reads one row; a tied output head reads the whole table
    (counted once, as the output). So: all tensors, the embedding table counted
    only when it is also the output, plus nothing for lookups.
    """

    if "-gguf-" not in model:
        from shoptalk.modeling.load import resolve_base_model
        from shoptalk.project import Project

        project = Project.open(project_dir)
        base = Path(resolve_base_model(project.config.base_model, project.root))
        # safetensors holds a tied table once, and it is read whole as the output head.
        return sum(p.stat().st_size for p in base.glob("*.safetensors"))
    quant = model.rsplit("-gguf-", 1)[1]
    gguf_path = project_dir / ".shoptalk" / "exports" / RUN_ID / f"gguf-{quant}"
    return gguf_weight_bytes(gguf_path / f"model-{quant}.gguf")


def gguf_weight_bytes(path: Path) -> int:
    """Every tensor of the GGUF `path`, a tied embedding table once (as the output head)."""
    from gguf import GGUFReader

    sizes = {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
    if "output.weight" in sizes:
        sizes.pop("token_embd.weight", None)
    return sum(sizes.values())


def read_bandwidth(threads: int | None = None) -> float:
    """Bytes per second this machine reads from memory (best of 5, 1 GiB), with `threads`
    threads (None: torch's default, all cores)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    data = torch.ones(256 * 1024**2, dtype=torch.float32)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        data.sum()
        best = max(best, data.numel() * 4 / (time.perf_counter() - start))
    return best


def one_request(client: openai.OpenAI, question: str, max_tokens: int, model: str = "base") -> dict:
    """Latency, time to first token, tokens and status of one streamed chat request."""
    start = time.monotonic()
    first, tokens = None, 0
    try:
        stream = client.chat.completions.create(
            model=model,
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


def run_clients(
    client,
    questions: list[str],
    clients: int,
    max_tokens: int,
    model: str = "base",
    seconds: float = float("inf"),
) -> tuple[list, float]:
    """The questions from `clients` threads; no new request starts after `seconds`."""
    start = time.monotonic()

    def ask(question: str) -> dict | None:
        if time.monotonic() - start > seconds:
            return None
        return one_request(client, question, max_tokens, model)

    with ThreadPoolExecutor(clients) as pool:
        results = [r for r in pool.map(ask, questions) if r is not None]
    return results, time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(name: str, results: list[dict], seconds: float) -> tuple[float, float, float]:
    """Prints the case; returns (completion tokens/s, TTFT p50, decode tokens/s p50).

    The decode rate of a request counts the tokens after its first over the
    time after its first: what the memory-bandwidth bound applies to.
    """
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
    decode = [
        (r["tokens"] - 1) / (r["latency"] - r["ttft"])
        for r in ok
        if r["ttft"] is not None and r["tokens"] > 1
    ]
    print(f"  decode p50 {percentile(decode, 50):.1f} tokens/s per request")
    return tokens / seconds, percentile(ttfts, 50), percentile(decode, 50)


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


def measure(client, model: str, args: argparse.Namespace, label: str) -> dict:
    one_request(client, "warm up", 4, model)  # loads the model
    questions = (QUESTIONS * args.requests)[: args.requests]
    one = summary(
        f"{label} 1 client ",
        *run_clients(client, questions, 1, args.max_tokens, model, args.seconds),
    )
    eight = summary(
        f"{label} 8 clients",
        *run_clients(client, questions, 8, args.max_tokens, model, args.seconds),
    )
    print(f"{label} throughput ratio 8 clients / 1 client: {eight[0] / one[0]:.2f}x")
    return {"label": label, "model": model, "one": one, "eight": eight}


def serve_and_measure(
    args: argparse.Namespace, tmp: Path, contexts: int, first: bool
) -> list[dict]:
    """One server (llamacpp_contexts = `contexts`): every engine's cases against it."""
    project, key = write_project(tmp / f"contexts-{contexts}", args.tiny, contexts)
    ggufs = add_gguf_exports(project, args.quants) if "llamacpp" in args.engines else []
    port = free_port()
    server = start_server(project, port)
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=600)
    cases = []
    try:
        if first and "transformers" in args.engines:
            cases.append(measure(client, "base", args, "transformers fp32"))
        for model in ggufs:
            quant = model.rsplit("-gguf-", 1)[1]
            label = f"llamacpp {quant} x{contexts} ctx"
            cases.append(measure(client, model, args, label))
        if first and args.overload:
            overload(client, url, args.max_tokens)
    finally:
        server.terminate()
        server.wait(60)
    for case in cases:
        case["bytes"] = weight_bytes_per_token(project, case["model"])
    return cases


def report(cases: list[dict]) -> None:
    """Each case against the transformers engine and its weights' bandwidth bound."""
    bandwidth = read_bandwidth()
    print(f"memory read bandwidth: {bandwidth / 1e9:.1f} GB/s")
    baseline = next((c["one"][0] for c in cases if c["model"] == "base"), None)
    print(
        "| engine | weights MB/token | bound tok/s | 1 client tok/s (x transformers) | decode "
        "tok/s (share of bound) | TTFT p50 | 8 clients tok/s | TTFT p50 |"
    )
    for case in cases:
        bound = bandwidth / case["bytes"]
        one, eight = case["one"], case["eight"]
        versus = f" ({one[0] / baseline:.2f}x)" if baseline else ""
        print(
            f"| {case['label']} | {case['bytes'] / 1e6:.0f} | {bound:.0f} | {one[0]:.1f}{versus} "
            f"| {one[2]:.1f} ({one[2] / bound:.2f}) | {one[1]:.2f}s | {eight[0]:.1f} "
            f"| {eight[1]:.2f}s |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--tiny", action="store_true", help="A tiny random model, not the default")
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["transformers", "llamacpp"],
        choices=["transformers", "llamacpp"],
    )
    parser.add_argument("--quants", nargs="+", default=["q8_0", "f32"], help="GGUF weight types")
    parser.add_argument(
        "--contexts",
        nargs="+",
        type=int,
        default=[2, 1],
        help="serve.llamacpp_contexts values, one server each",
    )
    parser.add_argument("--seconds", type=float, default=120, help="Bound of each case")
    parser.add_argument("--overload", action="store_true", help="Also 3x capacity at once")
    args = parser.parse_args()
    print(f"machine load before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for i, contexts in enumerate(args.contexts):
            cases += serve_and_measure(args, Path(tmp), contexts, first=i == 0)
    print(f"machine load after: {os.getloadavg()}")
    report(cases)


if __name__ == "__main__":
    main()
