"""Run lifecycle with real workers and a real Redis: cancellation (queued and running), time limits,
a dataset that disappears after queueing, and the worker as a separate `python worker.py` process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
import servicekit as kit

from aethera import keyspace as keys
from aethera.jobs.queue import JobQueue, JobState, job_id_for


async def _project(client: Any) -> str:
    resp = await client.post("/projects", json={"name": "jobs", "country": "DEU"})
    assert resp.status == 201
    return (await resp.json())["id"]


async def _run(client: Any, project_id: str, **aoi: float) -> dict[str, Any]:
    resp = await client.post(
        f"/projects/{project_id}/runs",
        json={"project_type": "solar", "aoi_geojson": kit.aoi_feature(**aoi), "config": {"capacity_mw": 3}},
    )
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def _run_record(svc: Any, run_id: str) -> dict[str, Any]:
    from aethera.storage.factory import open_storage

    storage = await open_storage(svc.settings)
    try:
        return msgspec.json.decode(await storage.read(keys.run_record_key(run_id)))
    finally:
        await storage.close()


# A larger AOI with a wide zone of influence: long enough (seconds) to be caught while it runs.
SLOW = {"east_km": -10.0, "north_km": -10.0, "side_km": 12.0}


async def test_worker_as_separate_process(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service()
    worker = kit.WorkerProcess(svc.env, tmp_path / "worker.log")
    try:
        project_id = await _project(svc.client)
        answer = await _run(svc.client, project_id)
        final = await kit.poll_task(svc.client, answer["task_id"], timeout_s=120)
        assert final["status"] == "COMPLETED", (final, (tmp_path / "worker.log").read_text()[-3000:])
        resp = await svc.client.get(f"/runs/{answer['run_id']}/results")
        assert resp.status == 200
        assert (await resp.json())["run_id"] == answer["run_id"]
    finally:
        worker.stop()


async def test_cancel_while_queued_never_starts(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    answer = await _run(c, await _project(c))
    resp = await c.delete(f"/tasks/{answer['task_id']}")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "REVOKED" and body["cancel_requested"] is True
    queue = JobQueue(svc.settings.redis_url or "")
    try:
        async with kit.in_process_worker(svc.settings):
            # the worker takes the aborted job off the queue without starting it: wait for that event
            async def gone() -> bool:
                return await queue.state(job_id_for(answer["run_id"], 1)) is JobState.UNKNOWN

            await kit.wait_for(gone, timeout_s=120)
    finally:
        await queue.close()
    task = await (await c.get(f"/tasks/{answer['task_id']}")).json()
    assert task["status"] == "REVOKED" and task["started_at"] is None and task["attempts"] == 0
    record = await _run_record(svc, answer["run_id"])
    assert record["status"] == "REVOKED" and record["started_at"] is None
    resp = await c.get(f"/runs/{answer['run_id']}/results")
    assert resp.status == 409 and (await resp.json())["status"] == "REVOKED"
    assert (await c.delete(f"/tasks/{answer['task_id']}")).status == 409
    # a run cancelled while queued is counted like every other REVOKED run
    metrics = await (await c.get("/metrics")).text()
    assert 'aethera_runs_total{status="REVOKED"} 1.0' in metrics, metrics


async def test_cancel_while_running_stops_at_a_step_boundary(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    answer = await _run(c, await _project(c), **SLOW)
    task_id = answer["task_id"]
    async with kit.in_process_worker(svc.settings):
        await kit.poll_task(c, task_id, until={"PROCESSING", "COMPLETED", "FAILED"}, interval_s=0.02)

        async def progress() -> Any:
            body = await (await c.get(f"/tasks/{task_id}")).json()
            return body if body["progress"] is not None or body["status"] != "PROCESSING" else None

        running = await kit.wait_for(progress, interval_s=0.02)
        assert running["status"] == "PROCESSING", running  # progress is visible while the run works
        assert set(running["progress"]) >= {"step", "percent", "message"}
        assert 0 <= running["progress"]["percent"] < 100 and running["progress"]["step"]
        resp = await c.delete(f"/tasks/{task_id}")
        assert resp.status == 202, await resp.text()
        body = await resp.json()
        assert body["status"] == "PROCESSING" and body["cancel_requested"] is True
        final = await kit.poll_task(c, task_id, timeout_s=120)
    assert final["status"] == "REVOKED", final
    resp = await c.get(f"/runs/{answer['run_id']}/results")
    assert resp.status == 409 and (await resp.json())["status"] == "REVOKED"
    for layer in ("natura", "overlap", "sensitivity"):
        assert (await c.get(f"/runs/{answer['run_id']}/biodiversity/{layer}")).status == 409
    record = await _run_record(svc, answer["run_id"])
    assert record["status"] == "REVOKED" and record["cancel_requested"] is True


async def test_soft_time_limit_fails_the_run_cleanly(make_service: Any) -> None:
    svc = await make_service(AETHERA_RUN_SOFT_TIME_LIMIT_S="0.05")
    c = svc.client
    answer = await _run(c, await _project(c), **SLOW)
    async with kit.in_process_worker(svc.settings):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    assert final["status"] == "FAILED", final
    assert "time limit exceeded" in final["error"] and final["error_code"] == "time_limit_exceeded"
    assert final["attempts"] == 1  # a time limit is not retried


async def test_hard_time_limit_fails_the_run_mid_step(make_service: Any) -> None:
    # soft = hard: whichever comes first (a step boundary past the soft limit, or the queue's job
    # timeout in the middle of a step), the run ends FAILED, once, with the reason
    svc = await make_service(AETHERA_RUN_SOFT_TIME_LIMIT_S="0.3", AETHERA_RUN_HARD_TIME_LIMIT_S="0.3")
    c = svc.client
    answer = await _run(c, await _project(c), **SLOW)
    async with kit.in_process_worker(svc.settings):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    from aethera.jobs.queue import JobQueue

    queue = JobQueue(svc.settings.redis_url or "")
    try:
        assert await queue.queued_count() == 0  # the job is finished, not left to be run again
    finally:
        await queue.close()
    assert final["status"] == "FAILED", final
    assert final["error"].startswith("time limit exceeded") and final["error_code"] == "time_limit_exceeded"
    assert final["attempts"] == 1


async def test_dataset_removed_after_queueing_fails_naming_the_layer(
    make_service: Any, tmp_path: Path, sample_catalog: Path
) -> None:
    data = tmp_path / "datasets"
    shutil.copytree(sample_catalog.parent, data)
    svc = await make_service(AETHERA_DATASETS=str(data / sample_catalog.name))
    c = svc.client
    answer = await _run(c, await _project(c))  # validated against the complete catalog
    (data / "land_cover.tif").unlink()  # the one layer no screening can do without
    async with kit.in_process_worker(svc.settings):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    assert final["status"] == "FAILED", final
    assert "land_cover" in final["error"] or "land cover" in final["error"], final["error"]
    assert str(data) not in final["error"]  # the layer is named, the server path is not
    assert final["attempts"] == 1  # bad data is not retried
    detail = await (await c.get(f"/runs/{answer['run_id']}")).json()
    assert detail["status"] == "FAILED" and detail["error"] == final["error"] and detail["outputs"] == {}


@pytest.mark.parametrize("backend", ["s3"])
async def test_full_flow_on_s3_with_a_worker_process(make_service: Any, tmp_path: Path, backend: str) -> None:
    svc = await make_service(backend)
    worker = kit.WorkerProcess(svc.env, tmp_path / "worker.log")
    try:
        answer = await _run(svc.client, await _project(svc.client))
        final = await kit.poll_task(svc.client, answer["task_id"], timeout_s=120)
        assert final["status"] == "COMPLETED", (final, (tmp_path / "worker.log").read_text()[-3000:])
        for layer in ("natura", "overlap", "sensitivity"):
            assert (await svc.client.get(f"/runs/{answer['run_id']}/biodiversity/{layer}")).status == 200
    finally:
        worker.stop()
