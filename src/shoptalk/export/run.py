"""The export stage: `shoptalk export DIR --format hf|gguf|ollama`.

    .shoptalk/exports/<run-id>/hf/          merged safetensors, tokenizer, generation config
    .shoptalk/exports/<run-id>/gguf-f16/    model-f16.gguf (+ Modelfile for ollama)

Every artifact is checked against the tuned model in memory before it is
handed over (export/parity.py): the HF folder in transformers, a GGUF in
llama.cpp itself (modeling/gguf.py). A failed check raises ExportError naming the
report. A failed export leaves no model files behind, only the reports and
logs its error names. The merged HF folder is written first and reused by GGUF exports once
its own parity check has passed.
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from shoptalk.artifacts import DatasetArtifact, RunArtifact, write_atomic
from shoptalk.export import ExportError
from shoptalk.export.parity import (
    EXACT_GGUF,
    FIXED_PROMPTS,
    NEAR_TIE_CAP,
    Messages,
    Observation,
    ParityResult,
    compare,
    configured_stop_ids,
    observe,
    observe_llamacpp,
)
from shoptalk.export.report import write_parity_report
from shoptalk.modeling.chat_format import stop_ids, with_system
from shoptalk.modeling.load import pick_device, resolve_base_model
from shoptalk.progress import Task
from shoptalk.project import Project
from shoptalk.records import Message
from shoptalk.registry.models import ExportInfo, add_export, open_registry, register_run

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Say = Callable[[str], None]
FORMATS = ("hf", "gguf", "ollama")
# fp32 merges change logits only by rounding; half precision rounds coarser.
LOGITS_ATOL = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 1e-1}


def export_model(
    project: Project,
    fmt: str = "hf",
    quant: str = "f16",
    model_id: str | None = None,
    say: Say = print,
    max_new_tokens: int | None = None,
    scorecard: bool = False,
) -> ExportInfo:
    """Export the promoted model (or `model_id`), check parity, record it in the registry.

    Answers are compared as long as the scorecard generated them
    (`eval.max_new_tokens`) unless `max_new_tokens` says otherwise. `scorecard`:
    then score the exported GGUF on the project's suites in llama.cpp
    (eval/exported.py) and print how it compares with the model it came from.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    if scorecard and fmt == "hf":
        raise ExportError(
            "--scorecard re-runs the scorecard on an exported GGUF in llama.cpp: use it with "
            "--format gguf or --format ollama (an hf export answers as the evaluated model, "
            "which its parity check shows)."
        )
    if fmt != "hf":
        from shoptalk.export.gguf import check_quant
        from shoptalk.modeling.gguf import require_llama_cpp

        check_quant(quant)
        require_llama_cpp(
            f"`shoptalk export --format {fmt}{' --scorecard' if scorecard else ''}` "
            "(it checks and scores the file in llama.cpp)"
        )
    max_new_tokens = max_new_tokens or project.config.eval.max_new_tokens
    run = pick_run(project, model_id)
    info = register_run(project, run)
    base_path = info.base_path or resolve_base_model(project.config.base_model, project.root)
    prompts = parity_prompts(project, info.dataset_hash)
    folder = project.exports / run.run_id
    device = pick_device(project.config.train.device)
    db = open_registry(project)

    from shoptalk.export.merge import load_tuned, save_merged
    from shoptalk.export.stream_merge import stream_merge, streaming_blocker

    say(f"export   {run.run_id}: running {len(prompts)} prompts through the tuned model")
    model, tokenizer = load_tuned(base_path, run, device)
    if fmt == "ollama":
        from shoptalk.export.ollama import go_template

        go_template(tokenizer)  # a template Ollama cannot use fails now, not after converting
    with Task("export reference answers", len(prompts)) as task:
        reference = observe(
            model, tokenizer, prompts, stop_ids(tokenizer), max_new_tokens, done=task.advance
        )
    hf_dir = folder / "hf"
    if fmt == "hf" or not _passed(hf_dir):
        dtype = next(model.parameters()).dtype
        provenance = {"model": run.run_id, "base_model": info.base_model, "run": str(run.path)}
        weights, adapter = (base_path, run.final) if run.is_adapter else (str(run.final), None)
        blocker = streaming_blocker(weights, adapter)
        if blocker is None:
            # The reference answers are recorded: free the model, merge from the files.
            del model
            gc.collect()
            say(f"merge    {hf_dir}  (shard by shard)")
            stream_merge(weights, adapter, hf_dir, dtype, tokenizer, provenance)
        else:
            say(f"merge    {hf_dir}  (in memory: {blocker})")
            save_merged(model, tokenizer, hf_dir, provenance)
            # The merged weights are on disk now; free them before loading the export back.
            del model
        gc.collect()
        atol = LOGITS_ATOL.get(str(dtype).removeprefix("torch."), 1e-1)
        with discarded_on_failure(hf_dir):
            check_hf(reference, hf_dir, prompts, run.run_id, atol, device, max_new_tokens, say)
        hf_export = add_export(db, run.run_id, _export_info("hf", None, hf_dir)).exports[-1]
        if fmt == "hf":
            return hf_export
    else:
        del model
        gc.collect()
        say(f"merge    {hf_dir}  (parity passed before, reused)")

    from shoptalk.export.gguf import write_gguf

    out = folder / f"gguf-{quant}"
    out.mkdir(parents=True, exist_ok=True)
    gguf_file = out / f"model-{quant}.gguf"
    say(f"gguf     {gguf_file}")
    with discarded_on_failure(out):
        write_gguf(hf_dir, gguf_file, quant)
        check_gguf(reference, gguf_file, prompts, run.run_id, max_new_tokens, say)
        if fmt == "ollama":
            write_modelfile(project, tokenizer, gguf_file, hf_dir, reference.stop_ids)
    if fmt == "ollama":
        say(f"ollama   ollama create {run.run_id} -f {out / 'Modelfile'}")
    files = [gguf_file] + ([out / "Modelfile"] if fmt == "ollama" else [])
    exported = add_export(db, run.run_id, _export_info(fmt, quant, out, files)).exports[-1]
    if scorecard:
        score_export(project, run, base_path, info.dataset_hash, gguf_file, hf_dir, say)
    return exported


def score_export(
    project: Project,
    run: RunArtifact,
    base_path: str,
    dataset_hash: str,
    gguf_file: Path,
    hf_dir: Path,
    say: Say = print,
) -> Path:
    """The scorecard re-run on the exported file, written to `<export>/scorecard/`."""
    from shoptalk.eval.exported import CONTEXT, comparison_lines, score_gguf

    folder = gguf_file.parent / "scorecard"
    config = json.loads((hf_dir / "config.json").read_text("utf-8"))
    # No more context than the model was trained for (llama.cpp warns; the KV cache grows).
    context = min(CONTEXT, int(config.get("max_position_embeddings") or CONTEXT))
    say(f"score    {gguf_file.name} on the project's suites in llama.cpp")
    score = score_gguf(project, run, base_path, dataset_hash, gguf_file, folder, context)
    for line in comparison_lines(score):
        say(line)
    return folder


def pick_run(project: Project, model_id: str | None) -> RunArtifact:
    if model_id is None:
        return project.promoted_run()
    run = RunArtifact(path=project.runs / model_id, run_id=model_id)
    if not run.final.is_dir():
        raise ExportError(
            f"--model {model_id}: no finished run in {run.path}. See `shoptalk models list`."
        )
    return run


def parity_prompts(project: Project, dataset_hash: str) -> list[Messages]:
    """Fixed prompts plus the held-out questions, each with the project's system prompt."""
    from shoptalk.eval.run import question_suites

    # The run's own dataset: its held-out FAQ rows, if no question files are configured.
    dataset = DatasetArtifact.of_run(project.datasets, dataset_hash)
    questions = [
        q.prompt_text for suite in question_suites(project, dataset) for q in suite.questions
    ]
    system = project.config.system_prompt
    fixed = [with_system([Message(**m) for m in p], system) for p in FIXED_PROMPTS]
    return fixed + [with_system([Message(role="user", content=q)], system) for q in questions]


def check_hf(
    reference: Observation,
    hf_dir: Path,
    prompts: list[Messages],
    model_id: str,
    atol: float,
    device: str = "cpu",
    max_new_tokens: int = 32,
    say: Say = print,
) -> None:
    """Load the folder as any transformers user would and compare; raise on failure."""
    from shoptalk.modeling.load import load_model, load_tokenizer

    model, tokenizer = load_model(str(hf_dir), device), load_tokenizer(str(hf_dir))
    stops = configured_stop_ids(model)
    with Task("parity hf (transformers)", len(prompts)) as task:
        exported = observe(model, tokenizer, prompts, stops, max_new_tokens, done=task.advance)
    result = compare(reference, exported, "hf", logits_atol=atol, greedy_bar=1.0)
    _finish(result, hf_dir, model_id, say)


def check_gguf(
    reference: Observation,
    gguf_file: Path,
    prompts: list[Messages],
    model_id: str,
    max_new_tokens: int = 32,
    say: Say = print,
) -> None:
    """Load the GGUF in llama.cpp itself and compare: the file's template, tokenizer and stops.

    f32/f16/bf16/q8_0 must answer every prompt identically or by a near tie;
    the k-quants' agreement is reported, not required (4-bit rounding changes answers).
    """
    from shoptalk.modeling.gguf import GgufChat

    quant = gguf_file.name.removeprefix("model-").removesuffix(".gguf")
    longest = max((len(ids) for ids in reference.prompt_ids), default=0)
    # Room for the longest prompt, its answer, and a tokenizer that splits a little finer.
    context = max(512, longest + max_new_tokens + 64)
    with (
        GgufChat(gguf_file, n_ctx=context) as chat,
        Task(f"parity gguf {quant} (llama.cpp)", len(prompts)) as task,
    ):
        exported = observe_llamacpp(chat, prompts, max_new_tokens, done=task.advance)
    result = compare(
        reference,
        exported,
        f"gguf {quant} (llama.cpp)",
        logits_atol=None,
        greedy_bar=1.0 if quant in EXACT_GGUF else None,
        near_tie_cap=NEAR_TIE_CAP,
    )
    _finish(result, gguf_file.parent, model_id, say)


def _finish(result: ParityResult, folder: Path, model_id: str, say: Say) -> None:
    report = write_parity_report(result, folder, model_id)
    if not result.passed:
        raise ExportError(
            f"The {result.artifact} export does not behave like the tested model:\n  "
            + "\n  ".join(result.failures())
            + f"\nReport: {report}"
        )
    greedy = next(c.detail for c in result.checks if c.name == "greedy outputs")
    say(f"parity   {result.artifact}: passed; greedy answers {greedy} ({report})")


# What a failed export keeps: the reports and the log its error message names.
KEPT_ON_FAILURE = ("parity.txt", "parity.json", "convert.log", "quantize.log")


@contextmanager
def discarded_on_failure(folder: Path) -> Iterator[None]:
    """On any error, delete what was written into `folder` but the reports; an empty folder too.

    Nobody should pick up half an export, or weights that failed their check.
    """
    try:
        yield
    except BaseException:
        for path in folder.iterdir() if folder.is_dir() else []:
            if path.name in KEPT_ON_FAILURE:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _passed(folder: Path) -> bool:
    report = folder / "parity.json"
    return report.is_file() and json.loads(report.read_text(encoding="utf-8")).get("passed")


def write_modelfile(
    project: Project,
    tokenizer: PreTrainedTokenizerBase,
    gguf_file: Path,
    hf_dir: Path,
    stops: list[int],
) -> Path:
    from shoptalk.export.ollama import modelfile

    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    context = min(int(config.get("max_position_embeddings") or 4096), 8192)
    text = modelfile(gguf_file.name, tokenizer, project.config.system_prompt, stops, context)
    path = gguf_file.parent / "Modelfile"
    write_atomic(path, text)
    return path


def _export_info(
    fmt: str, quant: str | None, folder: Path, files: list[Path] | None = None
) -> ExportInfo:
    files = files or sorted(p for p in folder.iterdir() if p.is_file())
    return ExportInfo(
        format=fmt,
        quant=quant,
        path=str(folder),
        files={p.name: sha256(p) for p in files},
        parity_passed=True,
        report=str(folder / "parity.txt"),
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
