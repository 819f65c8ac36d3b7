"""Scorecard speed: .venv/bin/python bench/eval_speed.py [--questions 100] [--batch-size 16]

Scores N questions (all 40 of the Chinese example, the rest from the English
one, in file order) with the default base model in both variants, through
`shoptalk.eval.run.evaluate`, exactly as `shoptalk eval` does. The tuned variant
is the base's own weights in a run folder: it costs the same to load and to run
as a real full fine-tune (the default method), without training one first.
Retention is off, as in the examples; `--retention` adds it (the first run
fills the cache of the base's answers; later runs only score).

Prints seconds per variant, questions per second, the total against the
3-minute target, and the CPU seconds used (the number to compare on a shared
machine: on an idle 2-core one, wall time is about CPU time / 2).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from shoptalk.artifacts import RunArtifact
from shoptalk.eval.questions import Suite, load_suites
from shoptalk.eval.run import evaluate
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TARGET_SECONDS = 180


def bench_suites(n: int) -> list[Suite]:
    """The Chinese example's questions, then the English example's, cut to `n` in all."""
    suites, left = [], n
    for example, lang in (("chaxiang", "zh"), ("kestrel", "en")):
        for suite in load_suites(sorted((EXAMPLES / example / "questions").glob("*.jsonl"))):
            taken = suite.questions[:left]
            if taken:
                name = f"{lang}_{suite.name}"  # both examples have a 'documents' suite
                suites.append(suite.model_copy(update={"name": name, "questions": taken}))
            left -= len(taken)
    return suites


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--retention", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base_path = resolve_base_model("default")
    suites = bench_suites(args.questions)
    n = sum(len(s.questions) for s in suites)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = yaml.safe_load((EXAMPLES / "kestrel" / "shoptalk.yaml").read_text())
        config["sources"] = {}
        config["eval"] = {
            "retention": args.retention,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
        }
        (root / "shoptalk.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        project = Project.open(root)
        run = RunArtifact(path=project.runs / "run-bench", run_id="run-bench")
        shutil.copytree(base_path, run.final)

        started, cpu_started = time.perf_counter(), time.process_time()
        card = evaluate(project, run, base_path, suites, force=True)
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu_started

    print(
        f"questions: {n} ({len(suites)} suites), batch {args.batch_size}, "
        f"max_new_tokens {args.max_new_tokens}"
    )
    for key, value in card.timing.items():
        print(f"{key:>24}: {value}")
    verdict = "under" if total < TARGET_SECONDS else "OVER"
    print(f"{'total seconds':>24}: {total:.1f} ({verdict} the {TARGET_SECONDS} s target)")
    # On a shared machine wall time depends on the neighbours; CPU time does not.
    print(f"{'CPU seconds':>24}: {cpu:.1f} on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
