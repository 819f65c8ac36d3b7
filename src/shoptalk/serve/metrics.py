"""Prometheus metrics per route, model and adapter: requests, model calls, tokens, latency.

The metrics count what the audit records (docs/architecture.md, "Metrics"):

- `shoptalk_requests_total`: one per /v1 request, i.e. one per audit row, with
  the audit row's route, model and status (a playground question to the base and
  the tuned model is one request, model `base+<run>`);
- `shoptalk_request_seconds`: that request's time, once per request;
- `shoptalk_model_calls_total`: one per model the request asked (the playground's
  question: two calls), by the model that answered;
- `shoptalk_tokens_total`: each call's tokens (so a request's tokens sum to its
  audit row's).

Each app has its own registry, so two apps in one process (tests, an upstream
and its client) never mix counts. Labels only ever hold route templates
(`/v1/chat/completions`, never the raw path), served model names and adapter
hashes, never anything a client typed: an unknown model is "unknown", so
neither secrets nor personal data can reach a label.
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
            "API requests (one per audit row) by route, model, adapter and HTTP status",
            ["route", "model", "adapter", "status"],
            registry=self.registry,
        )
        self.calls = Counter(
            "shoptalk_model_calls",
            "Model calls by route, model, adapter and status: a request that asks two models "
            "(the playground's base and tuned) is one request and two calls",
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
            "Time from request to last byte, once per request",
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

    def request(self, route: str, model: str, adapter: str, status: int, seconds: float) -> None:
        """One request, counted where its audit row is written."""
        self.requests.labels(route, model, adapter, str(status)).inc()
        self.latency.labels(route, model, adapter).observe(seconds)

    def call(
        self,
        route: str,
        model: str,
        adapter: str,
        status: int,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """One model call of a request, with its tokens."""
        self.calls.labels(route, model, adapter, str(status)).inc()
        self.tokens.labels(model, adapter, "prompt").inc(prompt_tokens)
        self.tokens.labels(model, adapter, "completion").inc(completion_tokens)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_label(scope: dict) -> str:
    """The route's template (`/v1/evals/{eval_id}/runs`), never the raw path a client typed."""
    return getattr(scope.get("route"), "path", None) or "unmatched"
