"""/v1/embeddings with the bundled all-MiniLM-L6-v2 (local, small), through the openai client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openai
import pytest
from serve_harness import serving

from shoptalk.registry.keys import KeyLimits


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory):
    with serving(tmp_path_factory.mktemp("state"), model_dir=tiny_model) as s:
        yield s


def test_embeddings_are_unit_vectors_that_rank_meaning(served):
    texts = ["How long is the claim window?", "What is the deadline for claims?", "退货期限"]
    # Unasked, the openai client requests base64 and decodes it; floats are asked explicitly.
    for options in ({}, {"encoding_format": "float"}):
        result = served.client().embeddings.create(model="all-MiniLM-L6-v2", input=texts, **options)
        vectors = np.array([d.embedding for d in result.data])
        assert vectors.shape == (3, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
        assert result.usage.prompt_tokens == result.usage.total_tokens > 3 * 3


def test_embeddings_need_their_own_model_name_and_scope(served):
    with pytest.raises(openai.NotFoundError):
        served.client().embeddings.create(model="base", input="hello")
    chat_only = served.app.state.services.keys.create("bob", KeyLimits(scopes=["chat"]))
    with pytest.raises(openai.PermissionDeniedError):
        served.client(chat_only.secret).embeddings.create(model="default", input="hello")


def test_the_embedding_model_is_listed_with_the_chat_models(served):
    name = served.app.state.embedder.name
    listed = {m.id for m in served.client().models.list()}
    assert {"base", name} <= listed
    assert served.client().models.retrieve(name).id == name


def test_text_longer_than_the_window_is_400(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().embeddings.create(model="default", input="claim " * 600)
    assert "reads at most 256" in caught.value.message


def test_the_server_embeds_with_the_index_s_model_loaded_once(served):
    from shoptalk.modeling.embed import load_embedder

    service = served.app.state.embedder
    index_embedder = load_embedder("default")
    assert service.name == "all-MiniLM-L6-v2" and index_embedder.name == "default"
    assert service.embedder.model is index_embedder.model
    vectors, tokens = service.embedder.encode_whole(["claim window"])
    assert np.allclose(vectors, index_embedder.encode(["claim window"])) and tokens >= 2
