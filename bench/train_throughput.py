"""LoRA training throughput: shoptalk against TRL's SFTTrainer + PEFT, same data, model, LoRA.

    .venv/bin/python bench/train_throughput.py            # 200 examples, 1 epoch per variant
    .venv/bin/python bench/train_throughput.py --quick    # 16 examples: a smoke run
    .venv/bin/python bench/train_throughput.py --parallel  # all variants at once (a busy machine)

Every variant trains the default model (SmolLM2-135M-Instruct, fp32, CPU) with
LoRA r=8, alpha=16, dropout 0 on all linear layers, cutoff 512 tokens, for one
epoch over the first `--examples` conversations of LLaMA-Factory's
alpaca_en_demo, read with shoptalk's own LLaMA-Factory reader. The variants:

    shoptalk      `shoptalk.train.sft.run` with shoptalk's defaults otherwise
    trl-default   SFTTrainer defaults (batch 4, gradient checkpointing on), fp32 forced
    trl-best      gradient checkpointing off, plus group_by_length or packing (both run)

Each variant runs in its own subprocess so the peak RSS (a high-water mark) of
one cannot hide another's. The matmul rate is measured before and after the
variants and the higher one sets the bound. The CPU is shared with other work
on this machine, so compare the ratios of one invocation, never absolute
figures across runs.

"Loss at equal tokens": each variant sees every example once (same real
tokens), then the same function (`shoptalk.train.loss.labelled_loss`) scores
the trained weights on the same examples, loss on the answer tokens only.
Learning rates are each tool's default (TRL 2e-5; shoptalk's plan picks its
own), so a loss difference is the recipe's, not only the code path's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "peer-data" / "llamafactory"
VARIANTS = ["shoptalk", "trl-default", "trl-best-grouped", "trl-best-packed"]
LORA = {"r": 8, "alpha": 16, "dropout": 0.0}
CUTOFF = 512


# --- data: the same conversations for every variant


def conversations(n: int) -> list:
    from shoptalk.data.llamafactory import read_llamafactory

    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "dataset_info.json"
        info.write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
        (Path(tmp) / "alpaca_en_demo.json").symlink_to(DATA_DIR / "alpaca_en_demo.json")
        chats, _ = read_llamafactory(info, Path(tmp))
    if len(chats) < n:
        sys.exit(f"wanted {n} examples from {DATA_DIR / 'alpaca_en_demo.json'}, found {len(chats)}")
    return chats[:n]


def encoded(tokenizer, chats: list) -> list:
    from shoptalk.modeling.chat_format import encode_conversation
    from shoptalk.train.packing import truncate

    return [truncate(encode_conversation(tokenizer, c, ""), CUTOFF) for c in chats]


# --- the FLOP bound


def model_shapes(base_path: str) -> dict[str, int]:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(base_path)
    d, heads, kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    kv_dim = d // heads * kv
    per_layer = d * (d + 2 * kv_dim + d) + 3 * d * cfg.intermediate_size
    lora_per_layer = LORA["r"] * (
        (d + d)
        + 2 * (d + kv_dim)
        + (d + d)
        + 2 * (d + cfg.intermediate_size)
        + (cfg.intermediate_size + d)
    )
    return {
        "layers": cfg.num_hidden_layers,
        "hidden": d,
        "intermediate": cfg.intermediate_size,
        "kv_dim": kv_dim,
        "vocab": cfg.vocab_size,
        "body": cfg.num_hidden_layers * per_layer,
        "lora": cfg.num_hidden_layers * lora_per_layer,
        "head": cfg.vocab_size * d,
    }


def flops_per_token(shapes: dict[str, int], labelled_share: float, mean_context: float) -> float:
    """Forward + backward FLOPs per real token of LoRA training, the least the math needs.

    A matmul with a weight of P parameters costs 2P FLOPs per token forward.
    Backward costs 2P for the gradient of its input, and 2P more for the
    gradient of its weight only if the weight trains. So, per token:
      frozen body (every linear layer of every block)   2P fwd + 2P bwd   = 4 * body
      LoRA A and B (they train)                          2P + 2P + 2P      = 6 * lora
      output layer (frozen, tied), needed only where a label is
                                                        4 * head * labelled_share
      attention scores and mixing, causal within each example, per layer:
        QK^T and AV forward = 2 * 2 * hidden * context, backward twice that
                                                        12 * hidden * context * layers
    Norms, activations and the optimizer are memory-bound and not counted.
    """
    attention = 12 * shapes["hidden"] * mean_context * shapes["layers"]
    return 4 * shapes["body"] + 6 * shapes["lora"] + 4 * shapes["head"] * labelled_share + attention


def matmul_rate(
    shapes: dict[str, int], tokens: int = 4096, seconds: float = 10.0
) -> tuple[float, float]:
    """Sustained fp32 GFLOP per second and per CPU-second over the model's matmul shapes."""
    d, inter, kv = shapes["hidden"], shapes["intermediate"], shapes["kv_dim"]
    pairs = [(d, d), (d, kv), (d, kv), (d, d), (d, inter), (d, inter), (inter, d)]
    pairs += [(o, i) for i, o in pairs]  # backward: gradient of the input
    pairs += [(d, shapes["vocab"] // 8)]  # the output layer, in a slice
    mats = [(torch.randn(tokens, i), torch.randn(i, o)) for i, o in pairs]
    flops_per_round = sum(2 * tokens * a.shape[1] * b.shape[1] for a, b in mats)
    for a, b in mats:  # warm up
        torch.mm(a, b)
    rounds, start, cpu = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - start < seconds:
        for a, b in mats:
            torch.mm(a, b)
        rounds += 1
    flops = rounds * flops_per_round / 1e9
    return flops / (time.perf_counter() - start), flops / (cpu_seconds() - cpu)


# --- variants (each runs in its own process)


def run_shoptalk(chats: list, base_path: str, work: Path) -> dict:
    from shoptalk.artifacts import DatasetArtifact, write_jsonl
    from shoptalk.config import LoraSettings, ShoptalkConfig, TrainSettings
    from shoptalk.train import sft

    data_dir = work / "dataset"
    data_dir.mkdir()
    write_jsonl(data_dir / "train.jsonl", chats)
    # LoRA on every layer like the peers (shoptalk's default trains the top 16
    # layers in full); an empty system prompt so every variant renders the same text.
    cfg = ShoptalkConfig(
        system_prompt="",
        train=TrainSettings(
            method="lora",
            lora=LoraSettings(**LORA),
            trainable_layers=None,
            epochs=1,
            max_seq_len=CUTOFF,
        ),
    )
    cpu = cpu_seconds()
    run = sft.run(cfg, DatasetArtifact(path=data_dir, hash="bench"), base_path, work / "run")
    cpu = cpu_seconds() - cpu
    peak = peak_rss_mib()
    steps = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(s["tokens"] / s["tokens_per_s"] for s in steps)
    model = adapted_model(base_path, run.final)
    return {"steps": len(steps), "train_s": seconds, "cpu_s": cpu, "peak_mib": peak, "model": model}


def run_trl(chats: list, base_path: str, work: Path, variant: str) -> dict:
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from shoptalk.modeling.load import load_model, load_tokenizer

    rows = [
        {
            "prompt": [m.model_dump() for m in c.messages[:-1]],
            "completion": [c.messages[-1].model_dump()],
        }
        for c in chats
    ]
    best = variant.startswith("trl-best")
    args = SFTConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=4,
        num_train_epochs=1,
        max_length=CUTOFF,
        bf16=False,  # TRL defaults to bf16, ~100x slower on a CPU without bf16 units
        gradient_checkpointing=not best,
        train_sampling_strategy="group_by_length" if variant == "trl-best-grouped" else "random",
        packing=variant == "trl-best-packed",
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
    )
    lora = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )

    class StepTimes(TrainerCallback):
        """Loop time from the start of training to the end of the last step."""

        def on_train_begin(self, *_args, **_kwargs):
            self.start = self.end = time.perf_counter()

        def on_step_end(self, *_args, **_kwargs):
            self.end = time.perf_counter()

    from datasets import Dataset

    timer = StepTimes()
    trainer = SFTTrainer(
        model=load_model(base_path, "cpu", torch.float32),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(base_path),
        peft_config=lora,
        callbacks=[timer],
    )
    cpu = cpu_seconds()
    trainer.train()
    cpu = cpu_seconds() - cpu
    peak = peak_rss_mib()
    return {
        "steps": trainer.state.global_step,
        "train_s": timer.end - timer.start,
        "cpu_s": cpu,
        "peak_mib": peak,
        "model": trainer.model,
    }


def adapted_model(base_path: str, adapter: Path) -> torch.nn.Module:
    from peft import PeftModel

    from shoptalk.modeling.load import load_model

    return PeftModel.from_pretrained(load_model(base_path, "cpu", torch.float32), adapter)


@torch.no_grad()
def answer_loss(model: torch.nn.Module, tokenizer, examples: list) -> float:
    """Mean loss per answer token of the trained weights on the training examples."""
    from shoptalk.train.loss import labelled_loss
    from shoptalk.train.packing import collate, pack

    model.eval()
    total, count = 0.0, 0
    for ex in examples:
        loss_sum, n = labelled_loss(model, collate(pack([ex], CUTOFF), tokenizer.pad_token_id))
        total, count = total + float(loss_sum), count + n
    return total / max(count, 1)


def cpu_seconds() -> float:
    """CPU time of this process, all threads: the work done, whatever else runs on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_variant(variant: str, n_examples: int) -> dict:
    from shoptalk.modeling.load import load_tokenizer, resolve_base_model

    torch.manual_seed(0)
    base_path = resolve_base_model("default")
    tokenizer = load_tokenizer(base_path)
    chats = conversations(n_examples)
    examples = encoded(tokenizer, chats)
    with tempfile.TemporaryDirectory() as tmp:
        if variant == "shoptalk":
            result = run_shoptalk(chats, base_path, Path(tmp))
        else:
            result = run_trl(chats, base_path, Path(tmp), variant)
    tokens = sum(len(e.input_ids) for e in examples)
    return {
        "variant": variant,
        "steps": result["steps"],
        "real_tokens": tokens,
        "train_s": round(result["train_s"], 2),
        "tokens_per_s": round(tokens / result["train_s"], 1),
        "cpu_s": round(result["cpu_s"], 1),
        "tokens_per_cpu_s": round(tokens / result["cpu_s"], 1),
        "peak_mib": round(result["peak_mib"]),
        "loss": round(answer_loss(result["model"], tokenizer, examples), 4),
    }


# --- the report


def run_children(variants: list[str], n_examples: int, parallel: bool) -> list[dict | None]:
    """Each variant in its own process: one after another, or all at once on a busy machine."""

    def start(variant: str) -> subprocess.Popen:
        cmd = [sys.executable, __file__, "--variant", variant, "--examples", str(n_examples)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(variant: str, child: subprocess.Popen) -> dict | None:
        out, err = child.communicate()
        if child.returncode:
            print(f"{variant} failed:\n{err[-3000:]}", file=sys.stderr)
            return None
        result = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        return result

    if parallel:
        children = [(v, start(v)) for v in variants]
        return [finish(v, c) for v, c in children]
    return [finish(v, start(v)) for v in variants]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="first N of alpaca_en_demo")
    parser.add_argument("--quick", action="store_true", help="16 examples: a smoke run")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the variants at the same time (they then share the load of a busy machine)",
    )
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    n_examples = 16 if args.quick else args.examples
    if args.variant:  # child process: one variant, result as JSON on the last line
        print(json.dumps(run_variant(args.variant, n_examples)))
        return

    from shoptalk.modeling.load import load_tokenizer, resolve_base_model

    base_path = resolve_base_model("default")
    examples = encoded(load_tokenizer(base_path), conversations(n_examples))
    tokens = sum(len(e.input_ids) for e in examples)
    labelled = sum(sum(label != -100 for label in e.labels) for e in examples)
    # Mean causal context of a token: (n + 1) / 2 within an example of n tokens.
    context = sum(len(e.input_ids) * (len(e.input_ids) + 1) / 2 for e in examples) / tokens
    shapes = model_shapes(base_path)
    per_token = flops_per_token(shapes, labelled / tokens, context)
    print(f"{n_examples} examples, {tokens} real tokens, {labelled / tokens:.0%} labelled")
    before = matmul_rate(shapes)
    print(f"matmul rate before {before[0]:.0f} GFLOP/s, {before[1]:.0f} GFLOP per CPU-second")

    results = [r for r in run_children(args.variants, n_examples, args.parallel) if r]

    # This machine's speed drifts; the faster of two measurements gives the stricter bound.
    after = matmul_rate(shapes)
    print(f"matmul rate after  {after[0]:.0f} GFLOP/s, {after[1]:.0f} GFLOP per CPU-second")
    rate, cpu_rate = max(before[0], after[0]), max(before[1], after[1])
    bound, cpu_bound = rate * 1e9 / per_token, cpu_rate * 1e9 / per_token
    print(f"{per_token / 1e6:.0f} MFLOP per token -> FLOP bound {bound:.0f} tokens/s")
    print(f"                   per CPU-second: {cpu_bound:.0f} tokens", flush=True)

    print()
    print(
        "| variant | steps | real tokens/s | share of bound | tokens/CPU-s | share of bound "
        "| peak RSS MiB | loss |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['variant']} | {r['steps']} | {r['tokens_per_s']} | "
            f"{r['tokens_per_s'] / bound:.0%} | {r['tokens_per_cpu_s']} | "
            f"{r['tokens_per_cpu_s'] / cpu_bound:.0%} | {r['peak_mib']} | {r['loss']} |"
        )
    by_name = {r["variant"]: r for r in results}
    if "shoptalk" in by_name:
        ours = by_name["shoptalk"]
        for name, r in by_name.items():
            if name != "shoptalk":
                wall = ours["tokens_per_s"] / r["tokens_per_s"]
                cpu = ours["tokens_per_cpu_s"] / r["tokens_per_cpu_s"]
                print(f"shoptalk / {name}: {wall:.2f}x per second, {cpu:.2f}x per CPU-second")
    if args.json:
        summary = {
            "matmul_gflops": rate,
            "matmul_gflops_per_cpu_s": cpu_rate,
            "flops_per_token": per_token,
            "bound": bound,
            "bound_per_cpu_s": cpu_bound,
        }
        args.json.write_text(json.dumps({**summary, "results": results}, indent=2))


if __name__ == "__main__":
    main()
