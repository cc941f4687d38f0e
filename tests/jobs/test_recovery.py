"""Runs that lose their worker or their queue are found and put back on track; transient failures are
retried with backoff, up to the attempt limit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import redis as sync_redis
import servicekit as kit

from aethera import keyspace as keys
from aethera.errors import StorageUnavailable
from aethera.jobs.tasks import OPERATION_TRIES
from aethera.storage.artifacts import artifact_key
from aethera.storage.factory import open_storage

SLOW = {"east_km": -10.0, "north_km": -10.0, "side_km": 12.0}


async def _project(client: Any) -> str:
    resp = await client.post("/projects", json={"name": "recovery", "country": "DEU"})
    return (await resp.json())["id"]


async def _run(client: Any, project_id: str, **aoi: float) -> dict[str, Any]:
    resp = await client.post(
        f"/projects/{project_id}/runs", json={"project_type": "wind", "aoi_geojson": kit.aoi_feature(**aoi)}
    )
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def test_killed_worker_run_is_requeued_and_completes(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service()  # run_lease_s = 3: a dead worker is noticed within ~2.25 s
    c = svc.client
    answer = await _run(c, await _project(c), **SLOW)
    doomed = kit.WorkerProcess(svc.env, tmp_path / "doomed.log")
    try:
        await kit.poll_task(
            c, answer["task_id"], until={"PROCESSING", "COMPLETED", "FAILED"}, timeout_s=60, interval_s=0.02
        )
        doomed.kill()  # SIGKILL mid-run: no clean-up, the lease just stops being renewed
    finally:
        doomed.stop()
    killed_at = time.monotonic()
    async with kit.in_process_worker(svc.settings):
        requeued = await kit.poll_task(
            c, answer["task_id"], until={"PENDING", "COMPLETED", "FAILED"}, timeout_s=120, interval_s=0.05
        )
        noticed_s = time.monotonic() - killed_at
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    print(f"lost worker noticed {noticed_s:.2f} s after the kill (lease {svc.settings.run_lease_s:g} s)")
    if requeued["status"] == "PENDING":
        assert requeued["error_code"] == "worker_lost" and "stopped responding" in requeued["error"]
    assert final["status"] == "COMPLETED", final
    # a second attempt: the lease expired and the recovery sweep handed the run on (the service never lets
    # arq re-run a job), which is the mechanism that bounds detection; its speed is not timed here, as two
    # busy cores make any number of seconds a guess
    assert final["attempts"] == 2


async def test_killed_worker_without_attempts_left_fails_with_the_reason(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service(AETHERA_RUN_MAX_ATTEMPTS="1")
    c = svc.client
    answer = await _run(c, await _project(c), **SLOW)
    doomed = kit.WorkerProcess(svc.env, tmp_path / "doomed.log")
    try:
        await kit.poll_task(
            c, answer["task_id"], until={"PROCESSING", "COMPLETED", "FAILED"}, timeout_s=60, interval_s=0.02
        )
        doomed.kill()
    finally:
        doomed.stop()
    async with kit.in_process_worker(svc.settings):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    assert final["status"] == "FAILED", final
    assert final["error_code"] == "worker_lost"
    assert "stopped responding" in final["error"] and "no attempts left" in final["error"]


async def test_runs_survive_redis_being_emptied(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    project_id = await _project(c)
    answers = [await _run(c, project_id) for _ in range(2)]
    sync_redis.Redis.from_url(svc.settings.redis_url).flushdb()  # queue, task records: all gone

    # the task answers fall back to the run records in storage
    for a in answers:
        body = await (await c.get(f"/tasks/{a['task_id']}")).json()
        assert body["status"] == "PENDING" and body["run_id"] == a["run_id"]
    # recovery leaves a just-created run a lease period (timed on Redis's clock) to be queued, then queues
    # it again: the worker's sweeps wait for that by themselves
    async with kit.in_process_worker(svc.settings):
        finals = [await kit.poll_task(c, a["task_id"], timeout_s=90) for a in answers]
    assert [f["status"] for f in finals] == ["COMPLETED", "COMPLETED"], finals


class FlakyStorage:
    """The real backend, except that writing a run's results.json fails `failures` times as if the
    storage were unreachable (fault injection for the retry path)."""

    def __init__(self, inner: Any, failures: int) -> None:
        self._inner = inner
        self.remaining = failures

    async def save(self, key: str, data: Any) -> Any:
        if key.endswith("/results.json") and self.remaining > 0:
            self.remaining -= 1
            raise StorageUnavailable("storage unreachable (injected)")
        return await self._inner.save(key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_storage_blip_retries_the_save_not_the_pipeline(make_service: Any) -> None:
    svc = await make_service(AETHERA_RUN_MAX_ATTEMPTS="3")
    c = svc.client
    answer = await _run(c, await _project(c))
    flaky: list[FlakyStorage] = []

    async def opener(settings: Any) -> Any:
        flaky.append(FlakyStorage(await open_storage(settings), failures=OPERATION_TRIES - 1))
        return flaky[0]

    async with kit.in_process_worker(svc.settings, open_storage=opener):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    assert final["status"] == "COMPLETED", final
    # one attempt: the failed save was tried again; the pipeline ran once
    assert final["attempts"] == 1 and flaky[0].remaining == 0
    storage = await open_storage(svc.settings)
    try:
        record = msgspec.json.decode(await storage.read(keys.run_record_key(answer["run_id"])))
        log = (await storage.read(artifact_key(answer["run_id"], "run.log", record["output_generation"]))).decode()
    finally:
        await storage.close()
    assert record["generation"] == 1 and record["output_generation"] == 1
    assert "retrying in" not in log and log.count("attempt 1 of 3") == 1


async def test_storage_away_for_longer_than_the_save_retries_makes_a_new_attempt(make_service: Any) -> None:
    svc = await make_service(AETHERA_RUN_MAX_ATTEMPTS="3")
    c = svc.client
    answer = await _run(c, await _project(c))
    flaky: list[FlakyStorage] = []

    async def opener(settings: Any) -> Any:
        flaky.append(FlakyStorage(await open_storage(settings), failures=OPERATION_TRIES))
        return flaky[0]

    async with kit.in_process_worker(svc.settings, open_storage=opener):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    assert final["status"] == "COMPLETED", final
    assert final["attempts"] == 2 and flaky[0].remaining == 0
    storage = await open_storage(svc.settings)
    try:
        record = msgspec.json.decode(await storage.read(keys.run_record_key(answer["run_id"])))
        log = (await storage.read(artifact_key(answer["run_id"], "run.log", record["output_generation"]))).decode()
        leftovers = [s.key async for s in storage.list(f"runs/{answer['run_id']}/attempts/1/")]
    finally:
        await storage.close()
    assert record["generation"] == 2 and record["output_generation"] == 2
    assert log.count("retrying in") == 1 and "attempt 1 failed" in log
    assert leftovers == []  # the uncommitted attempt's outputs were collected


async def test_transient_failure_after_the_last_attempt_fails_the_run(make_service: Any) -> None:
    svc = await make_service(AETHERA_RUN_MAX_ATTEMPTS="2")
    c = svc.client
    answer = await _run(c, await _project(c))

    async def opener(settings: Any) -> Any:
        return FlakyStorage(await open_storage(settings), failures=100)

    async with kit.in_process_worker(svc.settings, open_storage=opener):
        final = await kit.poll_task(c, answer["task_id"], timeout_s=120)
    assert final["status"] == "FAILED", final
    assert final["attempts"] == 2 and final["error_code"] == "backend_unavailable"
    assert "gave up after 2 attempts" in final["error"] and "unreachable" in final["error"]
    storage = await open_storage(svc.settings)
    try:
        record = msgspec.json.decode(await storage.read(keys.run_record_key(answer["run_id"])))
    finally:
        await storage.close()
    assert record["status"] == "FAILED" and record["attempts"] == 2
