"""Screen a trained run cheaply: retention drop and closed-book key-fact recall, tuned side only.

    python bench/retention_screen.py PROJECT [SUITE ...]     # SUITE: a questions/ file stem, or general_qa
    SCREEN_CHECKPOINT=.../checkpoints/step-0000050 python bench/retention_screen.py PROJECT

The base model's retention answers and likelihoods must be cached already (any
`shoptalk eval` with `eval.retention: true` on the same base and system prompt).
With SCREEN_CHECKPOINT, the tuned model is the base plus that checkpoint's
trainable weights (an unfinished run). Writes PROJECT/screen.json.
"""

import json
import os
import sys
import time
from pathlib import Path

from shoptalk.eval.metrics import key_fact_recall
from shoptalk.eval.questions import load_suite_file
from shoptalk.eval.retention import RetentionCheck, general_qa_suite
from shoptalk.eval.run import answer_suites
from shoptalk.modeling.generate import load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project

root = Path(sys.argv[1])
suites_wanted = sys.argv[2:] or ["faq_as_written"]
project = Project.open(root)
base_path = resolve_base_model(project.config.base_model, root)
ckpt = os.environ.get("SCREEN_CHECKPOINT")
if not ckpt:
    runs = [p for p in (root / ".shoptalk" / "runs").iterdir() if (p / "final").is_dir()]
    (run_dir,) = runs
    run = project.run(run_dir.name)
check = RetentionCheck.setup(project, base_path)
assert check._read_cache(), f"no cached base answers at {check.cache_file}"
t = time.time()
if ckpt:  # an unfinished run: the base plus a checkpoint's trainable weights
    import torch

    from shoptalk.artifacts import CHECKPOINT_WEIGHTS

    assistant = load_assistant(base_path, None, project.config.train.device)
    weights = torch.load(Path(ckpt) / CHECKPOINT_WEIGHTS, map_location="cpu")
    missing, unexpected = assistant.model.load_state_dict(weights, strict=False)
    assert not unexpected, unexpected[:5]
    run = type("R", (), {"run_id": ckpt})()
else:
    assistant = load_assistant(base_path, run, project.config.train.device)
check.measure("tuned", assistant)
s = check.scores()
out = {"run": run.run_id, "retention": s.model_dump() if hasattr(s, "model_dump") else str(s)}
out["retention_seconds"] = round(time.time() - t)
print(json.dumps(out), flush=True)
suites = [
    su
    for name in suites_wanted
    if name != "general_qa"
    for su in load_suite_file(root / "questions" / f"{name}.jsonl")
]
if "general_qa" in suites_wanted:
    suites.append(general_qa_suite())
# Bigger batches: the machine is shared; answers are greedy either way.
project.config.eval.batch_size = 64
answers, _ = answer_suites(project, assistant, suites, None, "screen: tuned answers")
for su in suites:
    rec = [
        key_fact_recall(a, q.must_include)
        for a, q in zip(answers[su.name], su.questions, strict=True)
    ]
    out[su.name] = round(sum(rec) / len(rec), 3)
    # Per question, in suite order: paired comparisons between two screened runs.
    out.setdefault("per_question", {})[su.name] = [round(r, 3) for r in rec]
out["seconds"] = round(time.time() - t)
print(json.dumps({k: v for k, v in out.items() if k != "per_question"}, indent=1))
(root / "screen.json").write_text(json.dumps(out, indent=1))
