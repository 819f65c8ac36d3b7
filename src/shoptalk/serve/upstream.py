"""An engine that forwards to an OpenAI-compatible upstream (vLLM, llama.cpp, another shoptalk).

Same interface as the transformers engine, so keys, limits, audit and metrics
work identically whichever engine answers. Requests are always streamed from
the upstream and re-emitted as deltas: one code path for streaming and not,
and the first token reaches the client as soon as the upstream sends it.

The upstream's key is read from the environment variable `serve.upstream_key_env`,
never from shoptalk.yaml, so it is not committed with the project.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx2 as httpx

from shoptalk.config import ServeSettings
from shoptalk.errors import ConfigError
from shoptalk.serve.engine import Delta, Params, Prepared
from shoptalk.serve.errors import ApiError


class UpstreamEngine:
    """An `Engine` whose model runs in another server."""

    system_prompt = ""  # the upstream's own chat template and prompt apply

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        default_max_tokens: int = 256,
    ) -> None:
        self.default_max_tokens = default_max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(headers=headers, timeout=timeout_s)
        self.queue_depth = 0

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> UpstreamEngine:
        if not settings.upstream_url:
            raise ConfigError("serve.engine is 'upstream' but serve.upstream_url is not set.")
        key = os.environ.get(settings.upstream_key_env)
        return cls(
            settings.upstream_url, key, settings.request_timeout_s, settings.default_max_tokens
        )

    async def names(self) -> list[str]:
        response = await self._send("GET", "/models")
        return [m["id"] for m in response.json()["data"]]

    async def prepare_chat(
        self, model: str, messages: list[dict[str, str]], params: Params, n: int
    ) -> Prepared:
        params.max_tokens = params.max_tokens or self.default_max_tokens
        body = {"messages": messages}
        return prepared(model, body, sum(len(m["content"]) for m in messages), params, n)

    async def prepare_text(
        self, model: str, prompts: list[str], params: Params, n: int
    ) -> Prepared:
        params.max_tokens = params.max_tokens or self.default_max_tokens
        return prepared(model, {"prompt": prompts}, sum(len(p) for p in prompts), params, n)

    async def start(self, prepared: Prepared) -> AsyncIterator[Delta]:
        """Send the request now, so the upstream's refusal is our status; stream later."""
        chat = "messages" in prepared.prompts[0]
        body = prepared.prompts[0] | {
            "model": prepared.model,
            "n": prepared.n,
            "temperature": prepared.params.temperature,
            "top_p": prepared.params.top_p,
            "seed": prepared.params.seed,
            "stop": prepared.params.stop or None,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": prepared.params.max_tokens,
        }
        path = "/chat/completions" if chat else "/completions"
        request = self.client.build_request("POST", self.url + path, json=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise upstream_error(response)
        return self._deltas(response, prepared, chat)

    async def _deltas(
        self, response: httpx.Response, prepared: Prepared, chat: bool
    ) -> AsyncIterator[Delta]:
        try:
            async for delta in deltas(response, prepared, chat):
                yield delta
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc
        finally:
            await response.aclose()

    async def _send(self, method: str, path: str) -> httpx.Response:
        try:
            response = await self.client.request(method, self.url + path)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc) from exc
        if response.status_code >= 400:
            raise upstream_error(response)
        return response

    async def close(self) -> None:
        await self.client.aclose()


def prepared(model: str, body: dict, characters: int, params: Params, n: int) -> Prepared:
    # The upstream counts the real prompt tokens; until it answers, reserve one
    # token per character, which over-counts for every tokenizer we know.
    return Prepared(model, "", characters, params, [body], n)


async def deltas(response: httpx.Response, prepared: Prepared, chat: bool) -> AsyncIterator[Delta]:
    """Deltas from the upstream's server-sent events; its usage replaces our estimate."""
    async for line in response.aiter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[len("data: ") :])
        if chunk.get("usage"):
            prepared.prompt_tokens = chunk["usage"]["prompt_tokens"]
            prepared.completion_tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices", []):
            text = choice["delta"].get("content") if chat else choice.get("text")
            if text or choice.get("finish_reason"):
                yield Delta(choice["index"], text or "", choice.get("finish_reason"))


def upstream_error(response: httpx.Response) -> ApiError:
    """The upstream's own error, in our envelope, with its status."""
    try:
        error = response.json()["error"]
        message, code = error["message"], error.get("code")
    except (ValueError, KeyError, TypeError):
        message, code = f"The upstream answered HTTP {response.status_code}.", None
    return ApiError(response.status_code, message, code=code)


def unreachable(url: str, exc: Exception) -> ApiError:
    return ApiError(
        503,
        f"The upstream model server at {url} is unreachable ({type(exc).__name__}).",
        code="upstream_unavailable",
    )
