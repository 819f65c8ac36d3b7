"""GGUF and Ollama export of the tiny random Llama with SmolLM2's tokenizer (tests/export/conftest.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from shoptalk.errors import MissingExtraError
from shoptalk.export import ExportError
from shoptalk.export.gguf import convert, converter_dir, gguf_warning
from shoptalk.export.run import export_model
from shoptalk.project import Project
from shoptalk.registry.models import get_model, open_registry

RUN_ID = "run-tinygguf0001"  # the fixture's run

pytestmark = pytest.mark.skipif(
    not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
    reason="GGUF converter not installed (scripts/setup.sh)",
)


def quiet(_: str) -> None:
    pass


@pytest.fixture
def llama_cpp():
    """GGUF exports are checked in llama.cpp: the llamacpp extra (installed by setup.sh --dev)."""
    return pytest.importorskip("llama_cpp")


def test_gguf_and_ollama_export(gguf_project: Project, llama_cpp) -> None:
    from transformers import AutoTokenizer

    from shoptalk.modeling.gguf import GgufChat

    info = export_model(gguf_project, "ollama", quant="f16", say=quiet)

    folder = Path(info.path)
    assert info.format == "ollama" and info.quant == "f16" and info.parity_passed
    assert set(info.files) == {"model-f16.gguf", "Modelfile"}
    report = json.loads((folder / "parity.json").read_text())
    assert report["artifact"] == "gguf f16 (llama.cpp)"
    checks = {c["name"]: c["passed"] for c in report["checks"]}
    assert checks == dict.fromkeys(
        ["chat template", "token ids", "stop tokens", "logits", "greedy outputs"], True
    )
    # In llama.cpp the GGUF carries the training template and tokenizer: same text, same ids.
    trained = AutoTokenizer.from_pretrained(gguf_project.runs / RUN_ID / "final")
    text = "退货期限是多少天？ The claim window is 47 days."
    with GgufChat(folder / "model-f16.gguf", n_ctx=256) as chat:
        assert chat.template == trained.chat_template
        assert chat.encode(text) == trained(text, add_special_tokens=False)["input_ids"]
    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-f16.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are Kestrel Assist."""' in modelfile
    # Both the HF folder it was converted from and the GGUF are in the registry.
    exports = get_model(open_registry(gguf_project), RUN_ID).exports
    assert [(e.format, e.quant) for e in exports] == [("hf", None), ("ollama", "f16")]


def test_a_conversion_logged_to_a_file_shows_its_progress(
    gguf_project: Project, tmp_path: Path
) -> None:
    import os
    import re
    import subprocess

    script = (
        "import sys; from pathlib import Path; from shoptalk.export.gguf import convert; "
        "convert(Path(sys.argv[1]), Path(sys.argv[2]), 'f16')"
    )
    final = gguf_project.runs / RUN_ID / "final"
    # A tiny model converts in a second: a line at every count instead of every 10 s.
    env = os.environ | {"SHOPTALK_PROGRESS_SECONDS": "0"}
    log_file = tmp_path / "export.log"
    with log_file.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-c", script, str(final), str(tmp_path / "model-f16.gguf")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=300,
        )
    text = log_file.read_text(encoding="utf-8")
    assert done.returncode == 0, text[-3000:]
    phase = re.escape("export: converting to GGUF f16 (MB)")
    assert re.search(rf"^{phase}: \d+/[1-9]\d*, [\d,.]+/s, ETA ", text, re.M), text
    assert re.search(rf"^{phase}: (\d+)/\1, [\d,.]+/s, in \d+:\d\d$", text, re.M), text


def test_unknown_tokenizer_is_a_readable_converter_error(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="pre-tokenizer was not recognized.*not possible"):
        convert(tiny_model, tmp_path / "model-f16.gguf", "f16")
    assert not (tmp_path / "model-f16.gguf").exists()
    assert (tmp_path / "convert.log").is_file()


def test_unsupported_quant_names_the_choices() -> None:
    from shoptalk.export.gguf import check_quant

    with pytest.raises(ExportError, match="expected one of f16, q8_0, f32, bf16, q4_k_m, .*q6_k"):
        check_quant("q2_k")
    with pytest.raises(ExportError, match="lower-case: --quant q4_k_m"):
        check_quant("Q4_K_M")


def test_the_converter_refuses_a_k_quant(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="converter writes f16, q8_0, f32, bf16, not 'q4_k_m'"):
        convert(tiny_model, tmp_path / "m.gguf", "q4_k_m")


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_without_llama_cpp_a_gguf_export_fails_first_and_leaves_no_folder(
    gguf_project: Project, monkeypatch: pytest.MonkeyPatch, quant: str
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what a missing package looks like
    with pytest.raises(MissingExtraError, match=r"llama-cpp-python.*setup\.sh --llamacpp"):
        export_model(gguf_project, "gguf", quant=quant, say=quiet)
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
    gguf_project: Project, monkeypatch: pytest.MonkeyPatch, llama_cpp
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
