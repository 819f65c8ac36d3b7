"""Where the llama.cpp engine's decode time goes: .venv/bin/python bench/llamacpp_raw.py

The serving bench (bench/serve_load.py) measures decode tokens/s through the
server and compares it with the memory-bandwidth bound of the weights. This
bench takes the server away: the default model, converted to GGUF by shoptalk's
converter, decodes one sequence greedily in the engine's own llama.cpp context
(`modeling.gguf.BatchContext`, the same calls the engine makes, no HTTP, no
tokenizer decode, no events), with 1 and with 2 threads. Beside each, the read
bandwidth with the same number of threads (`torch.sum` over 1 GiB, best of 5)
and so the bound: bandwidth / bytes of weights a decode step reads.

- raw share of the bound well below 1 with 1 thread: llama.cpp itself is not
  bandwidth-bound on this model (compute or per-operation overhead);
- 2 threads much faster than 1: compute-bound (bandwidth would not double);
- serving decode (serve_load.py) against raw at the same threads: the server's
  own per-token cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

# bench/ is on the path when this file runs: the bound is computed as serve_load.py does.
from serve_load import gguf_weight_bytes, read_bandwidth

PROMPT = "Explain in a few sentences why the sky looks blue during the day."


def decode_rate(path: Path, threads: int, prompt: list[int], steps: int) -> dict:
    """Greedy decode of `steps` tokens after `prompt`, one sequence, per-step times."""
    import numpy as np

    from shoptalk.modeling.gguf import BatchContext

    context = BatchContext(path, seq_tokens=len(prompt) + steps + 8, n_seq=1, n_threads=threads)
    try:
        start = time.perf_counter()
        (logits,) = context.decode([(0, prompt, 0, True)])
        prefill = time.perf_counter() - start
        token, pos, times = int(np.argmax(logits)), len(prompt), []
        for _ in range(steps):
            start = time.perf_counter()
            (logits,) = context.decode([(0, [token], pos, True)])
            token = int(np.argmax(logits))
            times.append(time.perf_counter() - start)
            pos += 1
    finally:
        context.close()
    return {
        "prefill_s": prefill,
        "tok_s": len(times) / sum(times),
        "p50_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quants", nargs="+", default=["q8_0", "f32"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="best of N decode runs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from shoptalk.export.gguf import convert
    from shoptalk.modeling.load import resolve_base_model

    base = Path(resolve_base_model("default", Path.cwd()))
    tokenizer = AutoTokenizer.from_pretrained(base)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    prompt = tokenizer.encode(text, add_special_tokens=False)
    bandwidth = {t: read_bandwidth(t) for t in args.threads}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants:
            path = convert(base, Path(tmp) / f"model-{quant}.gguf", quant)
            size = gguf_weight_bytes(path)
            for threads in args.threads:
                runs = [decode_rate(path, threads, prompt, args.steps) for _ in range(args.repeats)]
                best = max(runs, key=lambda r: r["tok_s"])
                bound = bandwidth[threads] / size
                rows.append(
                    {"quant": quant, "threads": threads, "weight_mb": size / 1e6,
                     "bandwidth_gb_s": bandwidth[threads] / 1e9, "bound_tok_s": bound,
                     "share": best["tok_s"] / bound, **best}
                )  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    print("\n| weights | threads | MB/token | read GB/s | bound tok/s | raw decode tok/s "
          "(share) | step p50 / min ms |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['quant']} | {r['threads']} | {r['weight_mb']:.0f} | "
            f"{r['bandwidth_gb_s']:.1f} | {r['bound_tok_s']:.0f} | "
            f"{r['tok_s']:.1f} ({r['share']:.2f}) | {r['p50_ms']:.1f} / {r['min_ms']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
