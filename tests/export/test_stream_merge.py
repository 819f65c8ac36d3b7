"""The shard-by-shard merge computes what peft's merge_and_unload computes, one shard at a time."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest

from shoptalk.export.stream_merge import stream_merge, streaming_blocker, weight_files
from shoptalk.modeling.load import load_tokenizer

PROVENANCE = {"model": "run-test"}


@pytest.fixture(scope="module")
def sharded_base(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The tiny Llama (~400 kB) saved in several shards, as a large base would be."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("sharded")
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(folder, max_shard_size="150KB")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    assert len(weight_files(folder)) >= 2
    return folder


def save_adapter(base: Path, folder: Path, **lora) -> Path:
    """A LoRA adapter with random A and B, so merging it changes every targeted weight."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def peft_merged(base: Path, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()


def streamed_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in weight_files(folder) for k, v in load_file(f).items()}


def assert_same_as_peft(base: Path, adapter: Path, out: Path) -> None:
    """Tensor by tensor against peft's merge, then the logits of the loaded folders."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    expected = peft_merged(base, adapter).state_dict()
    got = streamed_tensors(out)
    assert got and set(got) <= set(expected)
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-7, msg=name)
    ids = torch.tensor([[1, 5, 9, 42, 7, 3, 88]])
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    loaded = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, tuned(ids).logits, rtol=1e-5, atol=1e-5)


def test_streamed_merge_equals_peft_on_a_sharded_base(
    sharded_base: Path, tmp_path: Path, one_thread
) -> None:
    import torch

    adapter = save_adapter(
        sharded_base, tmp_path / "adapter", target_modules="all-linear", use_rslora=True
    )
    out = tmp_path / "merged"
    assert streaming_blocker(str(sharded_base), adapter) is None

    stream_merge(
        str(sharded_base),
        adapter,
        out,
        torch.float32,
        load_tokenizer(str(sharded_base)),
        PROVENANCE,
    )

    assert_same_as_peft(sharded_base, adapter, out)
    # Same shard files and index as the base; the targeted weights really changed.
    assert [f.name for f in weight_files(out)] == [f.name for f in weight_files(sharded_base)]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    base_index = json.loads((sharded_base / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == base_index["weight_map"]
    assert index["metadata"] == base_index["metadata"]
    before, after = streamed_tensors(sharded_base), streamed_tensors(out)
    name = "model.layers.1.mlp.down_proj.weight"
    assert not torch.equal(before[name], after[name])
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])
    assert json.loads((out / "shoptalk-export.json").read_text()) == PROVENANCE


def test_streamed_folder_matches_the_in_memory_export(
    sharded_base: Path, tmp_path: Path, one_thread
) -> None:
    """Config, generation config, tokenizer and chat template are the files peft's route writes."""
    import torch

    from shoptalk.artifacts import RunArtifact
    from shoptalk.export.merge import load_tuned, save_merged

    run = RunArtifact(path=tmp_path / "run", run_id="run-test")
    save_adapter(sharded_base, run.final, target_modules=["q_proj", "v_proj"])
    tokenizer = load_tokenizer(str(sharded_base))
    tokenizer.save_pretrained(run.final)
    streamed, in_memory = tmp_path / "streamed", tmp_path / "in-memory"

    stream_merge(str(sharded_base), run.final, streamed, torch.float32, tokenizer, PROVENANCE)
    model, tokenizer = load_tuned(str(sharded_base), run, "cpu")
    save_merged(model, tokenizer, in_memory, PROVENANCE)

    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "tokenizer.json",
    ]:
        assert json_or_text(streamed / name) == json_or_text(in_memory / name), name
    got, expected = streamed_tensors(streamed), streamed_tensors(in_memory)
    assert set(got) == set(expected)
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-7, msg=name)


def json_or_text(path: Path):
    return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()


def test_fan_in_fan_out_weights_gpt2(tmp_path: Path, tiny_model: Path, one_thread) -> None:
    """GPT-2 stores its linear layers transposed (Conv1D): the delta is transposed too."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    base = tmp_path / "gpt2"
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(base)
    targets = ["c_attn", "c_proj", "c_fc"]
    adapter = save_adapter(base, tmp_path / "adapter", target_modules=targets, fan_in_fan_out=True)
    assert streaming_blocker(str(base), adapter) is None

    out = tmp_path / "out"
    stream_merge(
        str(base), adapter, out, torch.float32, load_tokenizer(str(tiny_model)), PROVENANCE
    )

    assert_same_as_peft(base, adapter, out)


def test_streamed_merge_holds_one_shard_at_a_time(
    sharded_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    """Every tensor of an output shard is freed before the next base shard is opened."""
    import safetensors
    import safetensors.torch
    import torch

    adapter = save_adapter(sharded_base, tmp_path / "adapter", target_modules="all-linear")
    live, opened, written = [0], [], []
    real_open, real_save = safetensors.safe_open, safetensors.torch.save_file

    def counting_open(path, *args, **kwargs):
        if Path(path).parent == sharded_base:
            assert live[0] == 0, f"{live[0]} tensors of the last shard still held opening {path}"
            opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    def counting_save(tensors, path, *args, **kwargs):
        written.append(Path(path).name)
        for tensor in tensors.values():
            live[0] += 1
            weakref.finalize(tensor, lambda: live.__setitem__(0, live[0] - 1))
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", counting_open)
    monkeypatch.setattr(safetensors.torch, "save_file", counting_save)
    shards = [f.name for f in weight_files(sharded_base)]

    stream_merge(
        str(sharded_base),
        adapter,
        tmp_path / "out",
        torch.float32,
        load_tokenizer(str(sharded_base)),
        PROVENANCE,
    )

    assert opened == shards and written == shards and live[0] == 0


def test_full_weights_are_copied_unchanged(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    stream_merge(
        str(tiny_model),
        None,
        tmp_path / "out",
        torch.float32,
        load_tokenizer(str(tiny_model)),
        PROVENANCE,
    )

    before, after = streamed_tensors(tiny_model), streamed_tensors(tmp_path / "out")
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()


@pytest.mark.parametrize(
    ("lora", "reason"),
    [
        ({"target_modules": ["q_proj"], "use_dora": True}, "DoRA"),
        ({"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}, "more than LoRA pairs"),
        ({"target_modules": ["q_proj"], "lora_bias": True}, "sets lora_bias"),
        ({"target_modules": ["q_proj"], "rank_pattern": {"q_proj": 2}}, "sets rank_pattern"),
        # The tied lm_head: peft saves the embeddings with the adapter.
        ({"target_modules": ["lm_head"]}, "more than LoRA pairs, e.g. base_model.model.lm_head"),
    ],
)
def test_what_the_streamed_merge_does_not_implement_goes_to_peft(
    tiny_model: Path, tmp_path: Path, lora: dict, reason: str
) -> None:
    adapter = save_adapter(tiny_model, tmp_path / "adapter", **lora)
    assert reason in (streaming_blocker(str(tiny_model), adapter) or "")


def test_an_adapter_for_another_base_goes_to_peft(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_model)
    config.num_hidden_layers = 3
    deeper = tmp_path / "deeper"
    AutoModelForCausalLM.from_config(config).save_pretrained(deeper)
    adapter = save_adapter(deeper, tmp_path / "adapter", target_modules=["q_proj"])

    reason = streaming_blocker(str(tiny_model), adapter) or ""
    assert "trains model.layers.2.self_attn.q_proj.weight, which the base's files" in reason


def test_a_base_without_safetensors_goes_to_peft(tmp_path: Path) -> None:
    assert "not a local folder of safetensors" in streaming_blocker(
        "HuggingFaceTB/SmolLM2-135M", None
    )
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert "not a local folder of safetensors" in streaming_blocker(str(tmp_path), None)
