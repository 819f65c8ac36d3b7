"""The Evals API's rows: a cancel while queued wins, a stale run is claimed by one runner."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from shoptalk.registry.db import connect
from shoptalk.registry.evals import EvalOutputItemRow, EvalRunRow, EvalStore, now

SOURCE = {"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": []}}}


def store(tmp_path) -> EvalStore:
    return EvalStore(connect(f"sqlite:///{tmp_path / 'r.db'}"))


def test_a_run_canceled_while_queued_never_starts(tmp_path):
    evals = store(tmp_path)
    run = evals.add_run("eval_x", SOURCE, "key")
    evals.request_cancel(run.id)
    assert evals.get_run_any(run.id).status == "canceled"
    assert not evals.begin_run(run.id)
    other = evals.add_run("eval_x", SOURCE, "key")
    assert evals.begin_run(other.id)
    evals.request_cancel(other.id)  # in progress: the runner is asked, and stops at its next batch
    assert (evals.get_run_any(other.id).status, evals.get_run_any(other.id).requested) == (
        "in_progress",
        "cancel",
    )


def test_a_stale_run_is_claimed_once_and_a_live_one_not_at_all(tmp_path):
    evals = store(tmp_path)
    live = evals.add_run("eval_x", SOURCE, "key")
    stale = evals.add_run("eval_x", SOURCE, "key")
    with evals.sessions.begin() as session:
        old = now() - timedelta(minutes=5)
        session.execute(update(EvalRunRow).where(EvalRunRow.id == stale.id).values(heartbeat=old))
    assert [r.id for r in evals.interrupted(60)] == [stale.id]
    assert evals.interrupted(60) == []  # the claim refreshed its heartbeat
    assert live.id not in {r.id for r in evals.interrupted(60)}


def test_items_of_a_deleted_run_are_dropped_and_deleting_an_eval_deletes_its_runs(tmp_path):
    evals = store(tmp_path)
    evaluation = evals.add_eval({"name": "e"}, "key")
    run = evals.add_run(evaluation.id, SOURCE, "key")
    item = dict(index=0, status="pass", body={}, created=0)
    evals.add_item(EvalOutputItemRow(id="outputitem_1", run_id=run.id, **item))
    assert len(evals.items(run.id)) == 1
    evals.delete_eval(evaluation.id)
    assert evals.get_run_any(run.id) is None and evals.items(run.id) == []
    evals.add_item(EvalOutputItemRow(id="outputitem_2", run_id=run.id, **item))
    assert evals.items(run.id) == []
