"""The `serve:` section: the API server, its engine, limits, database and console."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

# llama.cpp's sequence ids are 0..LLAMA_MAX_SEQ-1 (`llama_max_parallel_sequences()`,
# 256 in llama-cpp-python 0.3.x): one context cannot decode more sequences than that.
LLAMACPP_MAX_SEQUENCES = 256


class ServeSettings(BaseModel, extra="forbid"):
    host: str = Field(
        "127.0.0.1", description="Address to bind; 0.0.0.0 needs TLS settings or --insecure"
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on")
    engine: Literal["auto", "transformers", "llamacpp", "upstream"] = Field(
        "auto",
        description="'auto': GGUF exports (<run>-gguf-<quant>) run in llama.cpp on CPU when "
        "llama-cpp-python is installed, every other model in transformers; 'transformers' runs "
        "every model in this process with transformers (GGUF exports not served); 'llamacpp' "
        "serves only GGUF exports, in llama.cpp (needs scripts/setup.sh --llamacpp); 'upstream' "
        "forwards to an OpenAI-compatible server (vLLM, llama.cpp) at upstream_url",
    )
    llamacpp_contexts: int = Field(
        2,
        ge=1,
        description="llama.cpp engine: contexts per model, each with its own thread(s), decoding "
        "up to max_batch_size sequences together; a new request goes to the least loaded one, "
        "more wait in order. 2 on 2 cores: one thread per context beat one context of 2 threads "
        "4-10x for 8 clients on a shared machine (bench/RESULTS.md)",
    )
    llamacpp_sequence_tokens: int = Field(
        2048,
        ge=0,
        description="llama.cpp engine: KV cache cells of each sequence (prompt + completion; "
        "longer requests get a 400); a context holds max_batch_size times this (default model: "
        "23 KB a cell, 377 MB a context), allocated when the context is made: the server refuses "
        "to start when all contexts' cells exceed the memory available. 0 = the model's whole "
        "context length",
    )
    llamacpp_threads: int = Field(
        0,
        ge=0,
        description="llama.cpp engine: CPU threads per context; 0 = the machine's cores divided "
        "by llamacpp_contexts",
    )
    upstream_url: str | None = Field(
        None,
        description="With engine 'upstream': the server's base URL, e.g. http://127.0.0.1:8001/v1",
    )
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
    max_batch_size: int = Field(
        8,
        ge=1,
        description="Requests merged into one forward pass; the llama.cpp engine decodes at most "
        f"{LLAMACPP_MAX_SEQUENCES} sequences together (engine 'llamacpp' refuses more; 'auto' "
        "caps its GGUF exports there, with a warning)",
    )
    batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits to fill up")
    max_queue: int = Field(64, ge=1, description="Waiting requests before answering 503")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Largest request body, in bytes; a bigger one gets 413"
    )
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask")
    default_max_tokens: int = Field(
        256, ge=1, description="Tokens generated when a request gives no max_tokens"
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Seconds a request may take before it fails with 504"
    )
    adapter_cache_gb: float = Field(4.0, gt=0, description="Memory for adapters loaded on demand")
    public_metrics: bool = Field(False, description="Serve /metrics without a key")
    store_prompts: bool = Field(
        False, description="Keep prompts and completions in the audit log (PII redacted)"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS), e.g. https://intranet.example; "
        "none = closed",
    )
    tls_certfile: str | None = Field(
        None, description="PEM certificate file for HTTPS (with tls_keyfile); none = plain HTTP"
    )
    tls_keyfile: str | None = Field(None, description="PEM private key file of tls_certfile")
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

    @model_validator(mode="after")
    def _llamacpp_batch_fits(self) -> ServeSettings:
        # Refused here, when the config is read, not at the first request: past llama.cpp's
        # sequence slots a worker would run out of sequence ids in the middle of serving.
        if self.engine == "llamacpp" and self.max_batch_size > LLAMACPP_MAX_SEQUENCES:
            raise ValueError(llamacpp_batch_error(self.max_batch_size, LLAMACPP_MAX_SEQUENCES))
        return self


def llamacpp_batch_error(max_batch_size: int, limit: int) -> str:
    return (
        f"serve.max_batch_size is {max_batch_size}, but the llama.cpp engine (serve.engine: "
        f"llamacpp) decodes at most {limit} sequences in one context: set serve.max_batch_size "
        f"between 1 and {limit} (each context of serve.llamacpp_contexts holds that many)"
    )
