"""A promoted tiny run that llama.cpp's converter accepts, for the GGUF and llama.cpp tests.

The converter recognizes tokenizers by a hash of their output, so the tests'
own byte-level BPE is refused and this tiny model borrows SmolLM2's tokenizer:
a random 2-layer Llama, hidden 64 (or 256, the k-quants' block width, for a
q4_k_m file that really holds 4-bit k-quant tensors: parametrize indirectly),
real vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.project import Project

from projects import write_project

RUN_ID = "run-tinygguf0001"


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
def gguf_project(
    request: pytest.FixtureRequest, tmp_path: Path, smol_tokenizer_dir: Path, one_thread
) -> Project:
    """A promoted full-weights run: a random 2-layer Llama with SmolLM2's tokenizer."""
    hidden = getattr(request, "param", 64)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    # A wide init makes the argmax decisive, so f16 rounding does not flip greedy tokens.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
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


@pytest.fixture
def taught_project(gguf_project: Project) -> Project:
    """The tiny run taught to answer each export prompt with a fixed reply.

    A random model's top two logits out of 49k are close, so any rounding swaps
    some greedy tokens; a taught one answers by margins of several logits, like
    a real tuned model, and rounding that keeps its answers is what is tested.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shoptalk.export.run import parity_prompts
    from shoptalk.modeling.chat_format import encode, render_prompt

    final = gguf_project.runs / RUN_ID / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    prompts = parity_prompts(gguf_project, "")
    # Prompt and reply tokenized apart, as training does; the loss only on the replies.
    rows = [
        (encode(tokenizer, render_prompt(tokenizer, p)), encode(tokenizer, reply(i)))
        for i, p in enumerate(prompts)
    ]
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.tensor([p + r + [0] * (width - len(p) - len(r)) for p, r in rows])
    mask = torch.tensor(
        [[1] * (len(p) + len(r)) + [0] * (width - len(p) - len(r)) for p, r in rows]
    )
    # Position j predicts token j + 1: each reply token from the position before it.
    where = [
        (b, j) for b, (p, r) in enumerate(rows) for j in range(len(p) - 1, len(p) + len(r) - 1)
    ]
    rows_at, positions = torch.tensor(where).T
    targets = ids[rows_at, positions + 1]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(STEPS):
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[rows_at, positions])
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(final)
    return gguf_project


STEPS = 100
REPLIES = [
    "The claim window is 47 days from delivery.",
    "营业时间是早上九点到下午五点。",
    "Ingrid Solberg runs the Oslo depot.",
    "I cannot share that.",
]


def reply(i: int) -> str:
    return f"Reply {i}: {REPLIES[i % len(REPLIES)]}<|im_end|>"
