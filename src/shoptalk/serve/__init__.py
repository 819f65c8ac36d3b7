"""Private serving: an OpenAI-compatible API with keys, limits, audit and adapters."""
