"""SIGTERM to a real `python worker.py` in the middle of a run: the run is never lost. Within the grace
period it completes; past it, it goes back to the queue and the next worker completes it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec
import servicekit as kit
from prometheus_client.parser import text_string_to_metric_families

from aethera import keyspace as keys

# A large AOI with a wide zone of influence: a run long enough (seconds) to be caught while it runs.
SLOW = {"east_km": -12.0, "north_km": -12.0, "side_km": 24.0}


async def _start_run(client: Any) -> dict[str, Any]:
    resp = await client.post("/projects", json={"name": "shutdown", "country": "DEU"})
    assert resp.status == 201, await resp.text()
    project_id = (await resp.json())["id"]
    resp = await client.post(
        f"/projects/{project_id}/runs",
        json={"project_type": "solar", "aoi_geojson": kit.aoi_feature(**SLOW), "config": {"capacity_mw": 3}},
    )
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def _stored_status(svc: Any, run_id: str) -> dict[str, Any]:
    from aethera.storage.factory import open_storage

    storage = await open_storage(svc.settings)
    try:
        return msgspec.json.decode(await storage.read(keys.run_record_key(run_id)))
    finally:
        await storage.close()


def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    code = proc.poll()
    assert code is not None, f"worker still running {timeout_s} s after SIGTERM"
    return code


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_sigterm_within_grace_completes_the_run(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service(AETHERA_SHUTDOWN_GRACE_S="120", AETHERA_WORKER_CONCURRENCY="1", AETHERA_LOG_LEVEL="INFO")
    log_path = tmp_path / "worker.log"
    worker = kit.WorkerProcess(svc.env, log_path)
    try:
        answer = await _start_run(svc.client)
        await kit.poll_task(svc.client, answer["task_id"], until={"PROCESSING"}, timeout_s=60, interval_s=0.05)
        worker.proc.send_signal(signal.SIGTERM)
        assert _wait_exit(worker.proc, 150) == 0
        # it exited only after finishing the run: COMPLETED with every output, no second worker needed
        record = await _stored_status(svc, answer["run_id"])
        assert record["status"] == "COMPLETED", (record, log_path.read_text()[-3000:])
        assert (await svc.client.get(f"/runs/{answer['run_id']}/results")).status == 200
        # what the worker process recorded reaches the API's /metrics (through Redis)
        resp = await svc.client.get("/metrics")
        assert resp.status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(await resp.text())
            for s in family.samples
        }
        for status in ("PENDING", "PROCESSING", "COMPLETED"):
            assert samples[("aethera_runs_total", (("status", status),))] == 1
        assert samples[("aethera_run_duration_seconds_count", (("status", "COMPLETED"),))] == 1
        steps = [k for k in samples if k[0] == "aethera_run_step_duration_seconds_count"]
        assert steps, "no step duration recorded"
        assert samples[("aethera_worker_heartbeats_total", ())] >= 1
    finally:
        worker.stop()
    lines = _json_lines(log_path)
    assert lines and all("run_id" in line and "task_id" in line for line in lines)  # every worker line
    about_run = [line for line in lines if line["run_id"] == answer["run_id"]]
    assert about_run and all(line["task_id"] == answer["task_id"] for line in about_run)


async def test_sigterm_past_grace_requeues_and_another_worker_completes(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service(AETHERA_SHUTDOWN_GRACE_S="0.1", AETHERA_WORKER_CONCURRENCY="1")
    first = kit.WorkerProcess(svc.env, tmp_path / "worker-1.log")
    second = None
    try:
        answer = await _start_run(svc.client)
        await kit.poll_task(svc.client, answer["task_id"], until={"PROCESSING"}, timeout_s=60, interval_s=0.05)
        first.proc.send_signal(signal.SIGTERM)
        assert _wait_exit(first.proc, 60) == 0
        # handed back, not lost and not failed
        record = await _stored_status(svc, answer["run_id"])
        assert record["status"] in {"PENDING", "COMPLETED"}, record
        assert record["status"] == "PENDING", (
            "the run finished within the 0.1 s grace period; the AOI is too small to test the hand-back",
            record,
        )

        second = kit.WorkerProcess(svc.env, tmp_path / "worker-2.log")
        final = await kit.poll_task(svc.client, answer["task_id"], timeout_s=180)
        assert final["status"] == "COMPLETED", (final, (tmp_path / "worker-2.log").read_text()[-3000:])
        assert (await svc.client.get(f"/runs/{answer['run_id']}/results")).status == 200
    finally:
        first.stop()
        if second is not None:
            second.stop()
