"""Prometheus metrics per model and adapter: requests by status, tokens, latency, queue.

Each app has its own registry, so two apps in one process (tests, an upstream
and its client) never mix counts. Labels only ever hold served model names and
adapter hashes, never anything a client typed: an unknown model is "unknown",
so neither secrets nor personal data can reach a label.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shoptalk_requests",
            "API requests by route, model, adapter and HTTP status",
            ["route", "model", "adapter", "status"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "shoptalk_tokens",
            "Tokens processed, by kind (prompt or completion)",
            ["model", "adapter", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shoptalk_request_seconds",
            "Time from request to last byte",
            ["route", "model", "adapter"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "shoptalk_time_to_first_token_seconds",
            "Time from request to the first generated text",
            ["model", "adapter"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "shoptalk_queue_depth", "Requests waiting for the model", registry=self.registry
        )
        self.queue.set_function(queue_depth)

    def observe(
        self,
        route: str,
        model: str,
        adapter: str,
        status: int,
        seconds: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        self.requests.labels(route, model, adapter, str(status)).inc()
        self.latency.labels(route, model, adapter).observe(seconds)
        self.tokens.labels(model, adapter, "prompt").inc(prompt_tokens)
        self.tokens.labels(model, adapter, "completion").inc(completion_tokens)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
