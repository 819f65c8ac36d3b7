"""Usage totals per key and per model, read from the audit rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shoptalk.registry.audit import AuditRow, usage_totals
from shoptalk.registry.db import connect


def test_usage_sums_requests_errors_and_tokens_per_key_and_model(tmp_path):
    sessions = connect(f"sqlite:///{tmp_path / 'registry.db'}")
    now = datetime.now(timezone.utc)
    rows = [
        ("key_a", "base", 10, 5, 200, now),
        ("key_a", "tuned", 20, 7, 200, now),
        ("key_a", "tuned", 30, 0, 429, now),
        ("key_b", "tuned", 1, 1, 200, now - timedelta(days=3)),
    ]
    with sessions.begin() as session:
        for key_id, model, prompt, completion, status, time in rows:
            session.add(
                AuditRow(
                    time=time,
                    key_id=key_id,
                    route="/v1/chat/completions",
                    model=model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    latency_ms=1.0,
                    status=status,
                )
            )

    usage = usage_totals(sessions)
    by_key = {row.name: row for row in usage.by_key}
    assert (by_key["key_a"].requests, by_key["key_a"].errors) == (3, 1)
    assert (by_key["key_a"].prompt_tokens, by_key["key_a"].completion_tokens) == (60, 12)
    by_model = {row.name: row for row in usage.by_model}
    assert by_model["tuned"].requests == 3 and by_model["tuned"].total_tokens == 59

    recent = usage_totals(sessions, since=now - timedelta(days=1))
    assert [row.name for row in recent.by_key] == ["key_a"]
