"""Round trip on the real default model: export to HF and GGUF f16, reload both,
greedy answers to the example's held-out questions identical to the model in memory.

The "run" is the untrained SmolLM2 base with a small random LoRA adapter, so the
merge changes real weights; training itself is tested elsewhere.
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

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kestrel"
RUN_ID = "run-smollm2lora01"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
        reason="GGUF converter not installed (scripts/setup.sh)",
    ),
]


@pytest.fixture
def example_project(tmp_path: Path) -> Project:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shoptalk.models import resolve_base_model

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
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]),
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=2e-3)
    model.save_pretrained(run.final)
    AutoTokenizer.from_pretrained(base).save_pretrained(run.final)
    write_json(run.path / "card.json", {"base_model": "default", "base_path": base})
    project.promote(run)
    return project


def test_default_model_hf_and_gguf_round_trip(example_project: Project) -> None:
    started = time.perf_counter()
    info = export_model(
        example_project,
        "gguf",
        quant="f16",
        say=lambda line: print(f"{time.perf_counter() - started:6.1f}s  {line}"),
        max_new_tokens=32,  # half the scorecard's 64, to stay near the recorded run time
    )

    exports = {e.format: e for e in get_model(open_registry(example_project), RUN_ID).exports}
    assert set(exports) == {"hf", "gguf"} and info.parity_passed
    for export in exports.values():
        report = json.loads((Path(export.path) / "parity.json").read_text())
        assert report["passed"], (Path(export.path) / "parity.txt").read_text()
        assert len(report["prompts"]) == 25  # 5 fixed prompts + 20 held-out questions
    hf = json.loads((Path(exports["hf"].path) / "parity.json").read_text())
    assert hf["exported"] == hf["reference"]
    # f16 rounding flipped one near-tie token in 1 of 25 answers on the last run
    # (bench/RESULTS.md); the GGUF bar is the parity check's 95%, asserted above.
    assert Path(exports["gguf"].path, "model-f16.gguf").stat().st_size > 200e6
