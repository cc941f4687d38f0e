"""A run's fixed cost is measured and its outputs listed once: the worker's per-attempt phase line (what
bench/e2e.py reads) and the artifact index the attempt writes once, before it commits."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import servicekit as kit

from aethera import keyspace as keys
from aethera.jobs.phases import ORDER, PhaseClock, parse_line, queue_wait_s
from aethera.jobs.queue import INTERACTIVE_LEAD_S
from aethera.storage.artifacts import INDEX_NAME, attempt_prefix


def test_phase_line_round_trips_in_order() -> None:
    clock = PhaseClock()
    clock.add("commit", 0.25)
    clock.add("writes", 0.125)
    clock.add("writes", 0.125)  # a phase entered twice adds up
    clock.add("pickup", -1.0)  # a clock step backwards counts as nothing, never as negative time
    with clock.measure("lease"):
        pass
    line = clock.line()
    assert [part.split("_s=")[0] for part in line.split()] == ["pickup", "lease", "writes", "commit"]
    parsed = parse_line(f"run abc phases: {line}")
    assert parsed["writes"] == 0.25 and parsed["commit"] == 0.25 and parsed["pickup"] == 0.0
    assert set(parsed) <= set(ORDER)


def test_queue_wait_counts_from_when_the_job_was_due() -> None:
    enqueued_s = 1_800_000_000.0
    enqueued = datetime.fromtimestamp(enqueued_s, tz=UTC)
    # a run queued for now sits INTERACTIVE_LEAD_S ahead of its enqueue time in the queue's order
    ctx = {"score": int((enqueued_s - INTERACTIVE_LEAD_S) * 1000), "enqueue_time": enqueued}
    assert queue_wait_s(ctx, enqueued_s + 0.04) == pytest.approx(0.04)
    # a retry deferred by its backoff waits from its due time, not from when it was queued
    ctx = {"score": int((enqueued_s + 30) * 1000), "enqueue_time": enqueued}
    assert queue_wait_s(ctx, enqueued_s + 30.5) == pytest.approx(0.5)
    assert queue_wait_s({}, enqueued_s) is None


async def test_completed_run_logs_its_phases_and_indexes_every_output(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service()
    log_path = tmp_path / "worker.log"
    worker = kit.WorkerProcess({**svc.env, "AETHERA_LOG_LEVEL": "INFO"}, log_path)
    try:
        resp = await svc.client.post("/projects", json={"name": "phases", "country": "DEU"})
        project_id = (await resp.json())["id"]
        resp = await svc.client.post(
            f"/projects/{project_id}/runs",
            json={"project_type": "solar", "aoi_geojson": kit.aoi_feature(), "config": {"capacity_mw": 3}},
        )
        assert resp.status == 202, await resp.text()
        run_id = (await resp.json())["run_id"]
        final = await kit.poll_task(svc.client, run_id, timeout_s=120)
        assert final["status"] == "COMPLETED", (final, log_path.read_text()[-3000:])
    finally:
        worker.stop()

    # the phase line: every phase of a completed attempt, none negative, the pipeline itself not zero
    lines = [
        json.loads(raw)["message"]
        for raw in log_path.read_text().splitlines()
        if raw.startswith("{") and f"run {run_id} phases:" in raw
    ]
    assert len(lines) == 1, log_path.read_text()[-3000:]
    phases = parse_line(lines[0])
    assert set(phases) == set(ORDER), phases
    assert all(v >= 0 for v in phases.values()) and phases["pipeline"] > 0 and phases["render"] > 0
    # the queue wait, not the queue's ordering lead (a day) added to it
    assert phases["pickup"] < INTERACTIVE_LEAD_S / 2

    # the index, written once, lists exactly the outputs stored under the committed attempt's prefix
    from aethera.storage.factory import open_storage

    storage = await open_storage(svc.settings)
    try:
        record = msgspec.json.decode(await storage.read(keys.run_record_key(run_id)))
        prefix = attempt_prefix(run_id, record["output_generation"])
        stored = {s.key[len(prefix) :]: s.key async for s in storage.list(prefix)}
        index = msgspec.json.decode(await storage.read(prefix + INDEX_NAME))
        listed = {a["name"]: a for a in index["artifacts"]}
        assert set(listed) == set(stored) - {INDEX_NAME}
        assert keys.RUN_LOG_NAME in listed and keys.REPORT_NAME in listed
        for name, entry in listed.items():
            data = await storage.read(stored[name])
            assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        await storage.close()
