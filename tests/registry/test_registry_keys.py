"""API keys: the secret is shown once and stored only as a hash; revoke, rotate, expiry."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from shoptalk.registry.db import connect
from shoptalk.registry.keys import (
    ApiKeyRow,
    KeyLimits,
    KeyStore,
    KeyStoreError,
    UnknownKeyError,
)


@pytest.fixture
def store(tmp_path) -> KeyStore:
    return KeyStore(connect(f"sqlite:///{tmp_path / 'registry.db'}"))


def test_secret_is_random_shown_once_and_stored_only_as_a_hash(store, tmp_path):
    new = store.create("alice", KeyLimits(scopes=["chat"], rpm=10))
    other = store.create("bob", KeyLimits())

    assert new.secret.startswith("sk-st-") and len(new.secret) >= 6 + 43  # 32 bytes, base64
    assert new.secret != other.secret
    with store.sessions() as session:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.id == new.key.id))
    assert row.secret_hash == hashlib.sha256(new.secret.encode()).hexdigest()
    assert row.prefix == new.secret[:10]
    database = b"".join(p.read_bytes() for p in tmp_path.glob("registry.db*"))
    assert new.secret.encode() not in database
    assert "secret" not in new.key.model_dump()
    assert all("secret" not in key.model_dump() for key in store.list())


def test_find_returns_the_key_and_its_limits(store):
    new = store.create("alice", KeyLimits(scopes=["chat", "embeddings"], models=["m1"], tpm=99))
    found = store.find(new.secret)
    assert found.id == new.key.id and found.models == ["m1"] and found.tpm == 99
    assert found.status() == "active"
    assert store.find(new.secret + "x") is None
    assert store.find("not-a-key") is None


def test_revoke_and_expiry_change_the_status(store):
    revoked = store.create("old laptop", KeyLimits())
    store.revoke(revoked.key.id)
    assert store.find(revoked.secret).status() == "revoked"

    short = store.create("contractor", KeyLimits(), expires_in_days=1)
    key = store.find(short.secret)
    assert key.status() == "active"
    assert key.status(datetime.now(timezone.utc) + timedelta(days=1, seconds=1)) == "expired"


def test_rotate_keeps_id_and_limits_and_kills_the_old_secret(store):
    first = store.create("ci", KeyLimits(scopes=["embeddings"], rpm=3, tokens_per_day=1000))
    second = store.rotate(first.key.id)
    assert second.secret != first.secret
    assert store.find(first.secret) is None
    key = store.find(second.secret)
    assert (key.id, key.rpm, key.tokens_per_day, key.scopes) == (
        first.key.id,
        3,
        1000,
        ["embeddings"],
    )
    store.revoke(first.key.id)
    with pytest.raises(KeyStoreError, match="revoked"):
        store.rotate(first.key.id)


def test_bad_input_names_the_field_and_what_was_found(store):
    with pytest.raises(
        KeyStoreError, match=r"scopes: expected some of chat, .*got \[.chat., .root.\]"
    ):
        store.create("x", KeyLimits(scopes=["chat", "root"]))
    with pytest.raises(KeyStoreError, match="rpm: expected a positive number"):
        store.create("x", KeyLimits(rpm=0))
    with pytest.raises(UnknownKeyError, match="key_nope"):
        store.revoke("key_nope")


def test_last_used_is_written_at_most_once_a_minute(store):
    new = store.create("alice", KeyLimits())
    assert store.get(new.key.id).last_used_at is None
    store.touch(new.key.id)
    first = store.get(new.key.id).last_used_at
    assert first is not None
    store.touch(new.key.id)
    assert store.get(new.key.id).last_used_at == first
