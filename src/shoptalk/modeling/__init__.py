"""The modeling layer every stage shares, importing none of them.

- `load`: resolve `base_model` and load a base or tuned model (device, dtype).
- `chat_format`: the contract for what the model sees (chat template, system prompt, tokens).
- `generate`: answer prompts with a loaded model.
- `embed`: the sentence-embedding model used by retrieval and `/v1/embeddings`.
"""
