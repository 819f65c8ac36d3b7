"""GGUF exports run in llama.cpp itself: same prompt text, same ids, same greedy answers.

The tiny random Llama of tests/export/conftest.py, exported to f32, q8_0 and a
k-quant, loaded with llama-cpp-python (the llamacpp extra; `setup.sh --dev`
installs it, so CI runs these).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shoptalk.export import ExportError
from shoptalk.export.gguf import converter_dir
from shoptalk.export.run import export_model, parity_prompts
from shoptalk.project import Project

RUN_ID = "run-tinygguf0001"  # the fixture's run

pytestmark = pytest.mark.skipif(
    not (converter_dir() / "convert_hf_to_gguf.py").is_file(),
    reason="GGUF converter not installed (scripts/setup.sh)",
)
llama_cpp = pytest.importorskip("llama_cpp", reason="the llamacpp extra: setup.sh --llamacpp")


def transformers_answers(
    run_dir: Path, prompts: list[list[dict]], max_new_tokens: int
) -> list[list[int]]:
    """Greedy answers of the evaluated model, one prompt at a time, cut after the stop."""
    import torch
    from transformers import AutoModelForCausalLM

    from shoptalk.export.parity import cut_at_stop
    from shoptalk.modeling.chat_format import prompt_ids, stop_ids
    from shoptalk.modeling.load import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch.float32)
    tokenizer = load_tokenizer(str(run_dir))
    stops = stop_ids(tokenizer)
    answers = []
    for messages in prompts:
        ids = prompt_ids(tokenizer, messages)
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=stops[0],
        )
        answers.append(cut_at_stop(out[0, len(ids) :].tolist(), stops))
    return answers


def llama_cpp_answers(
    gguf: Path, prompts: list[list[dict]], max_new_tokens: int
) -> list[list[int]]:
    from shoptalk.modeling.gguf import GgufChat

    with GgufChat(gguf, n_ctx=512) as chat:
        return [chat.greedy(chat.encode(chat.render(m)), max_new_tokens).tokens for m in prompts]


def test_f32_and_q8_0_answer_in_llama_cpp_as_the_evaluated_model(taught_project: Project) -> None:
    said: list[str] = []
    f32 = export_model(taught_project, "gguf", quant="f32", say=said.append)
    q8 = export_model(taught_project, "gguf", quant="q8_0", say=said.append)

    # The export's prompts, answered one by one (no batching) by the evaluated model.
    prompts = parity_prompts(taught_project, "")
    expected = transformers_answers(taught_project.runs / RUN_ID / "final", prompts, 24)
    assert all(len(a) > 3 for a in expected)
    for info in (f32, q8):
        gguf = Path(info.path) / f"model-{info.quant}.gguf"
        assert llama_cpp_answers(gguf, prompts, 24) == expected, info.quant
        report = json.loads((Path(info.path) / "parity.json").read_text())
        assert report["passed"] and report["exported"] == report["reference"], info.quant
        assert report["artifact"] == f"gguf {info.quant} (llama.cpp)"
        assert report["exported"][2].startswith("Reply 2: Ingrid Sol")  # what it was taught
    lines = [line for line in said if line.startswith("parity   gguf q8_0 (llama.cpp): ")]
    assert lines[-1].startswith("parity   gguf q8_0 (llama.cpp): passed; greedy answers 8/8")


@pytest.mark.parametrize("gguf_project", [256], indirect=True)  # rows of 256: real k-quant blocks
def test_a_k_quant_is_written_by_llama_cpp_and_its_parity_reported(gguf_project: Project) -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    info = export_model(gguf_project, "gguf", quant="q4_k_m", say=lambda _: None)

    folder = Path(info.path)
    assert info.quant == "q4_k_m" and set(info.files) == {"model-q4_k_m.gguf"}
    assert sorted(p.name for p in folder.iterdir()) == [
        "convert.log",
        "model-q4_k_m.gguf",
        "parity.json",
        "parity.txt",
        "quantize.log",
    ]
    types = {
        t.name: GGMLQuantizationType(t.tensor_type)
        for t in GGUFReader(folder / "model-q4_k_m.gguf").tensors
    }
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q4_K
    # Reported, not required: 4-bit rounding may change answers; the count is in the report.
    report = json.loads((folder / "parity.json").read_text())
    greedy = next(c for c in report["checks"] if c["name"] == "greedy outputs")
    assert greedy["passed"] and "reported, not checked" in greedy["detail"]
    assert (
        "PASSED (its greedy answers are compared and reported, not required"
        in ((folder / "parity.txt").read_text().splitlines()[0])
    )
    assert re.match(r"\d+/\d+ identical, \d+ near ties", greedy["detail"])
    assert len(report["exported"]) == len(report["reference"]) > 5


def test_a_failed_quantization_leaves_only_its_logs(
    gguf_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shoptalk.export.llamacpp as llamacpp

    def failing(source: Path, target: Path, quant: str, log_file: Path, **_) -> Path:
        assert source.is_file()
        log_file.write_text("out of disk\n")
        raise ExportError("llama.cpp could not quantize")

    monkeypatch.setattr(llamacpp, "quantize", failing)
    with pytest.raises(ExportError, match="could not quantize"):
        export_model(gguf_project, "gguf", quant="q5_k_m", say=lambda _: None)

    folder = gguf_project.state / "exports" / RUN_ID / "gguf-q5_k_m"
    assert sorted(p.name for p in folder.iterdir()) == ["convert.log", "quantize.log"]


def test_llama_cpp_stops_at_every_end_of_turn_token_of_the_chat_format(
    gguf_project: Project,
) -> None:
    from transformers import AutoTokenizer

    from shoptalk.export.gguf import convert
    from shoptalk.modeling.chat_format import stop_ids
    from shoptalk.modeling.gguf import GgufChat

    final = gguf_project.runs / RUN_ID / "final"
    gguf = convert(final, gguf_project.root / "model-f32.gguf", "f32")
    with GgufChat(gguf, n_ctx=128) as chat:
        stops = chat.stop_ids

    assert set(stop_ids(AutoTokenizer.from_pretrained(final))) <= set(stops)


def test_a_gguf_answer_from_passages_takes_only_their_numbers(gguf_project: Project) -> None:
    # The exported scorecard answers in llama.cpp: its guard (modeling.copy_numbers) masks
    # what greedy decoding may pick. Told the unguarded answer's first token writes a number
    # no passage holds, the guarded answer starts otherwise; the file's own pieces are read.
    from shoptalk.export.gguf import convert
    from shoptalk.modeling.copy_numbers import NumberGuard, pieces_from
    from shoptalk.modeling.gguf import GgufChat

    final = gguf_project.runs / RUN_ID / "final"
    gguf = convert(final, gguf_project.root / "model-f32.gguf", "f32")
    ask = [{"role": "user", "content": "How long is the claim window?"}]
    with GgufChat(gguf, n_ctx=256) as chat:
        prompt = chat.encode(chat.render(ask))
        first = chat.greedy(prompt, 4).tokens[0]
        guard = NumberGuard(pieces_from([(first, "7")]), ["No number here."])
        guarded = chat.greedy(prompt, 4, guard).tokens
        digits = {t for t, text in chat.number_pieces().pieces if text.strip().isdigit()}
    assert guarded[0] != first
    assert {chat.token_text(t) for t in digits} >= {str(d) for d in range(10)}
