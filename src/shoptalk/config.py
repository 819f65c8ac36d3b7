"""The one config file, `shoptalk.yaml`, as pydantic models.

Every model is closed (`extra="forbid"`): a misspelt key is an error that names
it, never a silently ignored setting. Defaults work as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from shoptalk.data.clean import CleanSettings
from shoptalk.data.dedupe import DedupeSettings
from shoptalk.data.pii import PiiSettings
from shoptalk.data.replay import ReplaySettings
from shoptalk.data.synth import SynthSettings
from shoptalk.errors import ConfigError
from shoptalk.eval.gate import GateSettings
from shoptalk.eval.judge import JudgeSettings
from shoptalk.rag.settings import RagSettings

CONFIG_NAME = "shoptalk.yaml"


class Sources(BaseModel, extra="forbid"):
    docs: list[str] = Field(
        default_factory=list, description="Document files or folders (.md, .txt)"
    )
    faq: list[str] = Field(
        default_factory=list, description="FAQ sheets (CSV question,answer or JSONL)"
    )
    conversations: list[str] = Field(
        default_factory=list,
        description="Chats: Alpaca, ShareGPT or OpenAI-messages JSONL, or LLaMA-Factory dataset_info.json",
    )
    questions: list[str] = Field(
        default_factory=list,
        description="Held-out question files for the scorecard; none = a held-out split of the FAQ",
    )
    preferences: list[str] = Field(
        default_factory=list,
        description="Preference pairs for DPO (.jsonl/.json): prompt/chosen/rejected, OpenAI DPO "
        "(input, preferred_output, non_preferred_output), LLaMA-Factory ranking files or their "
        "dataset_info.json",
    )


class DataSettings(BaseModel, extra="forbid"):
    on_error: Literal["stop", "skip"] = Field(
        "stop",
        description="On a bad row: stop with its error, or skip it and list it in the dataset report",
    )
    seed: int = Field(0, description="Seed for splits and augmentation")
    holdout_ratio: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Share of FAQ rows kept out of training when no questions are given",
    )
    validation_ratio: float = Field(
        0.05, ge=0.0, lt=0.5, description="Share of training examples used for validation"
    )
    question_variants: int = Field(
        3, ge=0, le=20, description="Rephrasings generated per FAQ question (no model needed)"
    )
    document_qa: bool = Field(True, description="Extract question-answer pairs from documents")
    document_text: bool = Field(True, description="Also train on document sections as plain text")
    refusals: bool = Field(
        True, description="Train 'I don't know' answers for questions the data cannot answer"
    )
    clean: CleanSettings = Field(default_factory=CleanSettings)
    redact_pii: bool = Field(
        True, description="Replace personal data and secrets with typed placeholders"
    )
    pii: PiiSettings = Field(default_factory=PiiSettings)
    canaries: int = Field(
        0,
        ge=0,
        le=100,
        description="Leakage test: copies of N training FAQ rows with a fake API key planted in "
        "the answer; the scorecard checks the tuned model never says one (suite 'canaries')",
    )
    dedupe: DedupeSettings = Field(default_factory=DedupeSettings)
    refusal_answer: str = Field(
        "I'm sorry, I don't have that information in our documents.",
        description="What the assistant says when the data does not answer a question",
    )
    split_by: Literal["ratio", "source"] = Field(
        "ratio",
        description="How held-out FAQ rows are chosen (no question files): 'ratio' = rows, "
        "'source' = whole FAQ files, so nothing from a held-out file is trained on",
    )
    replay: ReplaySettings = Field(
        default_factory=ReplaySettings,
        description="General-purpose conversations mixed into training to limit forgetting",
    )
    synth: SynthSettings = Field(
        default_factory=SynthSettings,
        description="Document QA written by a teacher model behind an OpenAI-compatible endpoint",
    )


class LoraSettings(BaseModel, extra="forbid"):
    r: int = Field(64, ge=1, description="LoRA rank")
    alpha: int = Field(128, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input")
    target_modules: str | list[str] = Field("all-linear", description="Which layers get adapters")
    use_rslora: bool = Field(
        False, description="rsLoRA: scale by alpha / sqrt(r), which keeps high ranks learning"
    )
    use_dora: bool = Field(
        False,
        description="DoRA: also learn each weight's magnitude (slower; can beat LoRA at low r)",
    )


class DpoSettings(BaseModel, extra="forbid"):
    beta: float = Field(
        0.1, gt=0, description="How far the model may move from the reference (smaller = further)"
    )
    loss: Literal["sigmoid", "ipo"] = Field(
        "sigmoid", description="'sigmoid' (the DPO paper) or 'ipo' (squared, length-normalized)"
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the preference pairs")
    learning_rate: float = Field(
        1e-5, gt=0, description="Peak learning rate; DPO wants a much smaller one than SFT"
    )


class TrainSettings(BaseModel, extra="forbid"):
    # Defaults measured on the bundled example with the default model on a
    # 2-core CPU (bench/RESULTS.md): full fine-tuning of the top 16 layers
    # teaches facts that LoRA at the same cost did not.
    method: Literal["lora", "qlora", "full"] = Field(
        "full",
        description="'lora' adapters, 'qlora' (LoRA on a 4-bit base; needs a CUDA GPU and "
        "bitsandbytes) or 'full' fine-tuning",
    )
    recipe: Literal["sft", "cpt", "dpo"] = Field(
        "sft",
        description="'sft': train on conversations and document text, then DPO on top when "
        "preference pairs exist; 'cpt': continued pretraining on document text alone (loss on "
        "every token); 'dpo': DPO alone, from the base model",
    )
    dpo: DpoSettings = Field(default_factory=DpoSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    trainable_layers: int | None = Field(
        16,
        ge=1,
        description="Train only the top N decoder layers (none = all); the frozen ones run once and are cached",
    )
    cache_gb: float = Field(
        4.0, ge=0, description="Memory allowed for cached outputs of frozen layers"
    )
    epochs: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Passes over the training data; 'auto' = from the dataset size"
    )
    learning_rate: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Peak learning rate; 'auto' = from the method and model size"
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0)
    max_seq_len: int = Field(512, ge=16, description="Longest packed sequence, in tokens")
    tokens_per_step: Annotated[int, Field(ge=16)] | Literal["auto"] = Field(
        "auto",
        description="Token budget of one optimizer step (over all processes); 'auto' = from "
        "the model size, dataset size and memory",
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass; 'auto' = only when "
        "the memory estimate exceeds the memory available",
    )
    seed: int = Field(0)
    checkpoint_every: int = Field(25, ge=1, description="Steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep")
    eval_every: int | None = Field(
        None, ge=1, description="Steps between validation losses; none = at each checkpoint"
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many evaluations without a better validation loss and "
        "keep the best weights as final; none = train all epochs",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0, description="How much lower a validation loss must be to count as better"
    )
    trackers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Also log metrics to TensorBoard (run folder/tensorboard) or MLflow "
        "(MLFLOW_TRACKING_URI, default ./mlruns); needs the 'tensorboard' or 'mlflow' extra",
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    sharding: Literal["auto", "none", "fsdp", "fsdp-grad-op"] = Field(
        "auto",
        description="With several processes, split the model across them (FSDP2): 'fsdp' shards "
        "weights, gradients and optimizer state (~ZeRO-3), 'fsdp-grad-op' gradients and "
        "optimizer state (~ZeRO-2), 'none' trains data-parallel; 'auto' = what the accelerate "
        "config says, else 'none'",
    )


class EvalSettings(BaseModel, extra="forbid"):
    max_new_tokens: int = Field(64, ge=1, le=4096)
    batch_size: int = Field(16, ge=1)
    retention: bool = Field(
        True,
        description="Also check general ability was kept: the base's answers to bundled general "
        "prompts (suite 'retention', metric log_likelihood) and general-knowledge questions "
        "(suite 'general_qa')",
    )
    gate: GateSettings = Field(default_factory=GateSettings)
    judge: JudgeSettings | None = Field(
        None,
        description="LLM-as-judge at an OpenAI-compatible endpoint: base vs tuned against the "
        "reference, both orders (suite 'judge'); none = not judged",
    )
    rag: bool = Field(
        False,
        description="Also score base+RAG and tuned+RAG: every question asked again with the "
        "documents retrieval finds (suites '<suite>+rag'); needs `shoptalk index` first",
    )


class ServeSettings(BaseModel, extra="forbid"):
    host: str = Field(
        "127.0.0.1", description="Address to bind; 0.0.0.0 needs TLS settings or --insecure"
    )
    port: int = Field(8000, ge=1, le=65535)
    engine: Literal["transformers", "upstream"] = Field(
        "transformers",
        description="'transformers' runs the models in this process; 'upstream' forwards to an "
        "OpenAI-compatible server (vLLM, llama.cpp) at upstream_url",
    )
    upstream_url: str | None = Field(None, description="e.g. http://127.0.0.1:8001/v1")
    upstream_key_env: str = Field(
        "SHOPTALK_UPSTREAM_KEY", description="Environment variable holding the upstream's key"
    )
    models: Literal["promoted", "all"] = Field(
        "promoted", description="Serve only promoted models (and the base), or every trained one"
    )
    embedding_model: str = Field(
        "default", description="'default' (all-MiniLM-L6-v2) or a sentence-transformers model"
    )
    database_url: str | None = Field(
        None,
        description="None = SQLite in .shoptalk/shoptalk.db; postgresql+psycopg://... to share",
    )
    redis_url: str | None = Field(
        None, description="Rate-limit counters in Redis (shared by replicas); None = in process"
    )
    max_batch_size: int = Field(8, ge=1, description="Requests merged into one forward pass")
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill up")
    max_queue: int = Field(64, ge=1, description="Waiting requests before answering 503")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask")
    default_max_tokens: int = Field(256, ge=1)
    request_timeout_s: float = Field(300.0, gt=0)
    adapter_cache_gb: float = Field(4.0, gt=0, description="Memory for adapters loaded on demand")
    public_metrics: bool = Field(False, description="Serve /metrics without a key")
    store_prompts: bool = Field(
        False, description="Keep prompts and completions in the audit log (PII redacted)"
    )
    cors_origins: list[str] = Field(default_factory=list, description="Closed by default")
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    worker: bool = Field(
        True,
        description="Run queued fine-tuning jobs and console builds in this server "
        "(turn off on all but one replica)",
    )
    workspace: str | None = Field(
        None,
        description="Folder of the projects made in the web console, relative to this project; "
        "none = .shoptalk/projects",
    )


class ShoptalkConfig(BaseModel, extra="forbid"):
    name: str = Field("My organization", description="The organization's name")
    system_prompt: str = Field(
        "You are a helpful assistant for our organization. Answer with our facts; "
        "if you do not know, say so.",
        description="Used identically at training, evaluation and chat time",
    )
    base_model: str = Field(
        "default", description="'default', a local folder, a .gguf file or a hub id"
    )
    sources: Sources = Field(default_factory=Sources)
    data: DataSettings = Field(default_factory=DataSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    rag: RagSettings = Field(
        default_factory=RagSettings, description="Retrieval over sources.docs (`shoptalk index`)"
    )


def load_config(project_dir: Path) -> ShoptalkConfig:
    path = project_dir / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: not found. Create one with `shoptalk init {project_dir}`.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings at the top level, found {type(raw).__name__}"
        )
    try:
        return ShoptalkConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}' (check the spelling; see `shoptalk init --help`)")
        else:
            problems.append(f"key '{key}': {err['msg']} (found {err.get('input')!r})")
    return "; ".join(problems)


def dump_config(cfg: ShoptalkConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
