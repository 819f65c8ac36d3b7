"""HF export of a tiny LoRA run: round trip, registry entry, and broken exports caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.export import ExportError
from shoptalk.export.run import export_model
from shoptalk.modeling.chat_format import stop_ids
from shoptalk.project import Project
from shoptalk.registry.models import get_model, open_registry

from projects import write_project

RUN_ID = "run-tinylora0001"


def quiet(_: str) -> None:
    pass


@pytest.fixture
def tuned_project(tmp_path: Path, tiny_model: Path, one_thread) -> Project:
    """A project whose promoted run is a LoRA adapter with random (non-zero) weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = write_project(tmp_path / "proj", tiny_model)
    project = Project.open(root)
    run = RunArtifact(path=project.runs / RUN_ID, run_id=RUN_ID)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    # init_lora_weights=False: B is random too, so the adapter changes the outputs.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(run.final)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(run.final)
    write_json(
        run.path / "card.json", {"base_model": str(tiny_model), "base_path": str(tiny_model)}
    )
    project.promote(run)
    return project


def tuned_logits(project: Project, tiny_model: Path, ids):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, project.runs / RUN_ID / "final").eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_hf_export_round_trip(tuned_project: Project, tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    said: list[str] = []
    info = export_model(tuned_project, "hf", say=said.append)

    folder = Path(info.path)
    assert any(line.endswith("(shard by shard)") for line in said), said
    assert info.parity_passed and (folder / "parity.txt").read_text().startswith("Parity check")
    assert "model.safetensors" in info.files and len(info.files["model.safetensors"]) == 64
    merged = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_model).chat_template
    assert merged.generation_config.eos_token_id == stop_ids(tokenizer)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    ids = torch.tensor([tokenizer("What is the claim window?")["input_ids"]])
    with torch.no_grad():
        got = merged(input_ids=ids).logits
    torch.testing.assert_close(
        got, tuned_logits(tuned_project, tiny_model, ids), atol=1e-4, rtol=1e-4
    )
    report = json.loads((folder / "parity.json").read_text())
    assert report["passed"] and report["reference"] == report["exported"]
    # The project's held-out questions are among the prompts checked.
    assert any("How long is the claim window?" in p for p in report["prompts"])
    entry = get_model(open_registry(tuned_project), RUN_ID)
    assert [(e.format, e.parity_passed) for e in entry.exports] == [("hf", True)]


def test_dora_adapter_is_merged_by_peft_in_memory(tuned_project: Project, tiny_model: Path) -> None:
    """The streamed merge does not implement DoRA: peft merges it, and parity still holds."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    final = tuned_project.runs / RUN_ID / "final"
    (final / "adapter_model.safetensors").unlink()
    dora = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights=False
    )
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), dora).save_pretrained(final)
    said: list[str] = []

    info = export_model(tuned_project, "hf", say=said.append)

    assert any("(in memory: the adapter is DoRA)" in line for line in said), said
    assert info.parity_passed


def test_wrong_chat_template_fails_the_export(
    tuned_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoptalk.export import stream_merge

    real = stream_merge.stream_merge

    def merge_with_wrong_template(weights, adapter, target, *args):
        real(weights, adapter, target, *args)
        (target / "chat_template.jinja").write_text(
            "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}### assistant: {% endif %}"
        )

    monkeypatch.setattr(stream_merge, "stream_merge", merge_with_wrong_template)
    with pytest.raises(ExportError, match="chat template: differs on") as caught:
        export_model(tuned_project, "hf", say=quiet)

    report = tuned_project.state / "exports" / RUN_ID / "hf" / "parity.txt"
    assert str(report) in str(caught.value)
    text = report.read_text()
    assert "FAILED" in text and "[FAIL] chat template" in text and "### user:" in text
    assert get_model(open_registry(tuned_project), RUN_ID).exports == []


def test_missing_stop_token_fails_the_export(
    tuned_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoptalk.export import stream_merge

    real = stream_merge.stream_merge

    def merge_without_stops(weights, adapter, target, dtype, tokenizer, provenance):
        real(weights, adapter, target, dtype, tokenizer, provenance)
        config = json.loads((target / "generation_config.json").read_text())
        config["eos_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        (target / "generation_config.json").write_text(json.dumps(config))

    monkeypatch.setattr(stream_merge, "stream_merge", merge_without_stops)
    with pytest.raises(ExportError, match="stop tokens: reference"):
        export_model(tuned_project, "hf", say=quiet)


def test_unknown_model_id_is_a_clear_error(tuned_project: Project) -> None:
    with pytest.raises(ExportError, match="--model run-nope: no finished run"):
        export_model(tuned_project, "hf", model_id="run-nope", say=quiet)


def test_exported_tokenizer_renders_what_training_rendered(tuned_project: Project) -> None:
    from transformers import AutoTokenizer

    from shoptalk.modeling.chat_format import prompt_ids

    info = export_model(tuned_project, "hf", say=quiet)

    trained = AutoTokenizer.from_pretrained(tuned_project.runs / RUN_ID / "final")
    exported = AutoTokenizer.from_pretrained(info.path)
    messages = [
        {"role": "system", "content": "You are Kestrel Assist."},
        {"role": "user", "content": "退货期限是多少天？"},
    ]
    ids = exported.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids) == prompt_ids(trained, messages)


def test_cli_export_and_models(tuned_project: Project) -> None:
    from typer.testing import CliRunner

    from shoptalk.cli import app

    runner = CliRunner()
    exported = runner.invoke(app, ["export", str(tuned_project.root)])
    assert exported.exit_code == 0, exported.output
    assert "parity   hf: passed" in exported.output

    listed = runner.invoke(app, ["models", "list", str(tuned_project.root)])
    assert RUN_ID in listed.output and "*" in listed.output and "hf" in listed.output
    shown = json.loads(
        runner.invoke(app, ["models", "show", str(tuned_project.root), RUN_ID]).output
    )
    assert shown["promoted"] and shown["exports"][0]["files"]["model.safetensors"]

    refused = runner.invoke(app, ["models", "delete", str(tuned_project.root), RUN_ID])
    assert refused.exit_code == 2 and "--force" in refused.output
    bad = runner.invoke(app, ["export", str(tuned_project.root), "--format", "onnx"])
    assert bad.exit_code == 2 and "expected one of hf, gguf, ollama" in bad.output


def test_training_eval_serving_and_export_render_the_same_prompt(tuned_project: Project) -> None:
    """One question, rendered by the four stages that meet it, gives one sequence of ids."""
    import asyncio

    from transformers import AutoTokenizer

    from shoptalk.modeling.chat_format import IGNORE, encode_conversation, prompt_ids
    from shoptalk.records import Conversation, Message
    from shoptalk.serve.app import create_app
    from shoptalk.serve.engine import Params

    system = tuned_project.config.system_prompt
    question, reply = "退货期限是多少天？", "47 天。"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    trained = AutoTokenizer.from_pretrained(tuned_project.runs / RUN_ID / "final")
    # Training: the ids before the first trained (answer) token.
    example = encode_conversation(
        trained,
        Conversation(
            id="q",
            messages=[
                Message(role="user", content=question),
                Message(role="assistant", content=reply),
            ],
            source="test",
        ),
        system,
    )
    training = example.input_ids[
        : example.labels.index(next(x for x in example.labels if x != IGNORE))
    ]
    # Evaluation (and ask/chat): generate.answer renders with prompt_ids.
    evaluation = prompt_ids(trained, messages)
    # Serving: the engine's rendering of the same chat for the promoted model.
    engine = create_app(tuned_project.root).state.engine
    prepared = asyncio.run(
        engine.prepare_chat("shoptalk", [{"role": "user", "content": question}], Params(4), 1)
    )
    serving = list(prepared.prompts[0])
    # Export: the exported folder's own chat template.
    exported = AutoTokenizer.from_pretrained(export_model(tuned_project, "hf", say=quiet).path)
    ids = exported.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    export = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert training == evaluation == serving == export
