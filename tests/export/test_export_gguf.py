"""GGUF and Ollama export of a tiny random Llama that uses the default model's tokenizer.

llama.cpp's converter recognizes tokenizers by a hash of their output, so the
tests' own byte-level BPE is refused (tested below as a readable error) and
this tiny model borrows SmolLM2's tokenizer: 2 layers, hidden 64, real vocab.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.export import ExportError
from shoptalk.export.gguf import convert, converter_dir, gguf_warning
from shoptalk.export.run import export_model
from shoptalk.project import Project
from shoptalk.registry.models import get_model, open_registry

from projects import write_project

RUN_ID = "run-tinygguf0001"

pytestmark = pytest.mark.skipif(
    not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
    reason="GGUF converter not installed (scripts/setup.sh)",
)


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def smol_tokenizer_dir() -> Path:
    from shoptalk.errors import ModelError
    from shoptalk.modeling.load import resolve_base_model

    try:
        return Path(resolve_base_model("default"))
    except ModelError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def gguf_project(tmp_path: Path, smol_tokenizer_dir: Path, one_thread) -> Project:
    """A promoted full-weights run: a random 2-layer Llama with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    # A wide init makes the argmax decisive, so f16 rounding does not flip greedy tokens.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        initializer_range=0.2,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    root = write_project(tmp_path / "proj", smol_tokenizer_dir)
    project = Project.open(root)
    run = RunArtifact(path=project.runs / RUN_ID, run_id=RUN_ID)
    LlamaForCausalLM(config).save_pretrained(run.final)
    tokenizer.save_pretrained(run.final)
    write_json(run.path / "card.json", {"base_model": "default", "base_path": str(run.final)})
    project.promote(run)
    return project


# Slow only because transformers parses a 49k-token GGUF vocabulary twice (~1 min on 2 cores).
@pytest.mark.slow
def test_gguf_and_ollama_export(gguf_project: Project) -> None:
    from transformers import AutoTokenizer

    info = export_model(gguf_project, "ollama", quant="f16", say=quiet)

    folder = Path(info.path)
    assert info.format == "ollama" and info.quant == "f16" and info.parity_passed
    assert set(info.files) == {"model-f16.gguf", "Modelfile"}
    report = json.loads((folder / "parity.json").read_text())
    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert checks == dict.fromkeys(
        ["chat template", "token ids", "stop tokens", "logits", "greedy outputs"], True
    )
    # The GGUF carries the training template and tokenizer: same text, same ids.
    gguf_tok = AutoTokenizer.from_pretrained(folder, gguf_file="model-f16.gguf")
    trained = AutoTokenizer.from_pretrained(gguf_project.runs / RUN_ID / "final")
    assert gguf_tok.chat_template == trained.chat_template
    text = "退货期限是多少天？ The claim window is 47 days."
    assert gguf_tok(text)["input_ids"] == trained(text)["input_ids"]
    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-f16.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are Kestrel Assist."""' in modelfile
    # Both the HF folder it was converted from and the GGUF are in the registry.
    exports = get_model(open_registry(gguf_project), RUN_ID).exports
    assert [(e.format, e.quant) for e in exports] == [("hf", None), ("ollama", "f16")]


def test_unknown_tokenizer_is_a_readable_converter_error(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="pre-tokenizer was not recognized.*not possible"):
        convert(tiny_model, tmp_path / "model-f16.gguf", "f16")
    assert not (tmp_path / "model-f16.gguf").exists()
    assert (tmp_path / "convert.log").is_file()


def test_unsupported_quant_names_the_choices(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="expected one of f16, q8_0, f32, bf16"):
        convert(tiny_model, tmp_path / "m.gguf", "q4_k_m")


def test_a_k_quant_fails_before_any_work_and_leaves_no_folder(gguf_project: Project) -> None:
    with pytest.raises(ExportError, match="k-quant.*llama-quantize model-f16.gguf"):
        export_model(gguf_project, "gguf", quant="q4_k_m", say=quiet)
    assert not (gguf_project.state / "exports").exists()


def test_q8_0_keeps_embeddings_and_output_at_f16(gguf_project: Project, tmp_path: Path) -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    out = convert(gguf_project.runs / RUN_ID / "final", tmp_path / "model-q8_0.gguf", "q8_0")

    types = {t.name: GGMLQuantizationType(t.tensor_type) for t in GGUFReader(out).tensors}
    assert types["token_embd.weight"] == GGMLQuantizationType.F16
    assert types.get("output.weight", GGMLQuantizationType.F16) == GGMLQuantizationType.F16
    assert (
        types["blk.0.attn_q.weight"] == types["blk.1.ffn_down.weight"] == GGMLQuantizationType.Q8_0
    )


def test_a_failed_gguf_check_leaves_only_its_reports(
    gguf_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shoptalk.export.run as export_run

    def failing_check(reference, gguf_file, *args, **kwargs) -> None:
        assert gguf_file.is_file()
        (gguf_file.parent / "parity.txt").write_text("FAILED")
        raise ExportError("does not behave like the tested model")

    monkeypatch.setattr(export_run, "check_gguf", failing_check)
    with pytest.raises(ExportError, match="does not behave"):
        export_model(gguf_project, "ollama", quant="q8_0", say=quiet)

    folder = gguf_project.state / "exports" / RUN_ID / "gguf-q8_0"
    assert sorted(p.name for p in folder.iterdir()) == ["convert.log", "parity.txt"]
    exports = get_model(open_registry(gguf_project), RUN_ID).exports
    assert [(e.format, e.quant) for e in exports] == [("hf", None)]


def test_architecture_warning_before_training(tmp_path: Path, tiny_model: Path) -> None:
    from shoptalk.pipeline.stages import warn_if_not_gguf_exportable

    said: list = []
    warn_if_not_gguf_exportable(str(tiny_model), said.append)
    assert said == [] and gguf_warning(str(tiny_model)) is None
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FancyNewForCausalLM"]}))
    warn_if_not_gguf_exportable(str(tmp_path), said.append)
    assert len(said) == 1 and said[0].status == "warning"
    assert "FancyNewForCausalLM" in said[0].message and "--format hf works" in said[0].message
