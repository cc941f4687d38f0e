"""The pipeline's child process: it is killed and reaped on a hard time limit or a cancelled job, it stops
on a cancelled run, it dies with a SIGKILLed worker, and the run's progress still reaches GET /tasks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import servicekit as kit

from aethera.jobs import pipeline_process

SLOW_WORKER = Path(__file__).resolve().parents[1] / "faults" / "slow_worker.py"


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z...), or None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def _until_gone(pids: set[int], *, zombie_ok: bool = False, timeout_s: float = 60.0) -> None:
    dead = {None, "Z"} if zombie_ok else {None}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_state(pid) in dead for pid in pids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError({pid: _state(pid) for pid in pids})


async def _start_run(client: Any, aoi: dict[str, float]) -> dict[str, Any]:
    resp = await client.post("/projects", json={"name": "child", "country": "DEU"})
    assert resp.status == 201, await resp.text()
    project_id = (await resp.json())["id"]
    resp = await client.post(
        f"/projects/{project_id}/runs",
        json={"project_type": "solar", "aoi_geojson": kit.aoi_feature(**aoi), "config": {"capacity_mw": 3}},
    )
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def _progress(client: Any, task_id: str) -> dict[str, Any]:
    async def seen() -> Any:
        body = await (await client.get(f"/tasks/{task_id}")).json()
        return body if body["progress"] is not None or body["status"] != "PROCESSING" else None

    running = await kit.wait_for(seen, interval_s=0.02)
    assert running["status"] == "PROCESSING", running
    assert 0 <= running["progress"]["percent"] < 100 and running["progress"]["step"], running
    return running


def _job(sample_catalog: Path, aoi: dict[str, float]) -> pipeline_process.PipelineJob:
    from aethera.analysis.params import RunParams

    params = RunParams.from_request("solar", "DEU", {"capacity_mw": 3})
    return pipeline_process.PipelineJob(
        run_id="c" * 32,
        aoi_bytes=json.dumps(kit.aoi_feature(**aoi)).encode(),
        params=msgspec.to_builtins(params),
        datasets=str(sample_catalog),
        max_aoi_km2=10_000.0,
        soft_deadline_mono=time.monotonic() + 3600,
    )


def _slow_worker(service_env: dict[str, str], log_path: Path, delay_s: float = 600.0) -> subprocess.Popen[bytes]:
    """The fault tests' slowed worker: its pipeline sleeps `delay_s` after each progress report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERA_", "S3_", "STORAGE_"))}
    env.update(
        service_env,
        AETHERA_TEST_STEP_DELAY_S=str(delay_s),
        AETHERA_WORKER_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
        AETHERA_LOG_LEVEL="INFO",
    )  # INFO: tests wait for its lines
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, str(SLOW_WORKER)],
            env=env,
            cwd=str(SLOW_WORKER.parents[2]),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _prepared(log_path: Path) -> Any:
    async def check() -> bool:
        return log_path.exists() and "pipeline processes prepared" in log_path.read_text(errors="replace")

    return check


async def _pipeline_child(log_path: Path) -> int:
    """The pid of the run's pipeline process, from the worker's own line as it starts it: an event, where
    looking for a live child in the process table could miss one that a time limit ends within seconds."""

    async def child() -> int | None:
        found = _STARTED.findall(log_path.read_text(errors="replace")) if log_path.exists() else []
        return int(found[-1]) if found else None

    return await kit.wait_for(child, timeout_s=90, interval_s=0.05)


_STARTED = re.compile(r"pipeline process (\d+) started")


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def test_a_cancelled_job_terminates_its_child_mid_step(
    sample_catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # what a hard time limit does (the queue cancels the job's coroutine): the stop Event is never set
    # and the child waits, mid-step, for its first output to be stored; only a kill can end it
    waiting = asyncio.Event()

    async def output(name: str, data: bytes, media_type: str) -> None:
        waiting.set()
        await asyncio.Event().wait()  # storage that never answers

    stop = pipeline_process.new_stop_event()
    caplog.set_level(logging.INFO, logger=pipeline_process.__name__)
    job = _job(sample_catalog, {"side_km": 0.8})
    task = asyncio.create_task(pipeline_process.run_pipeline(job, stop, lambda *a: None, output))
    await asyncio.wait_for(waiting.wait(), 60)
    (pid,) = pipeline_process.active_pids()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _state(pid) is None  # terminated and reaped before the coroutine went on: no zombie
    assert pipeline_process.active_pids() == {}
    assert f"pipeline process {pid} ended (exit code {-signal.SIGTERM})" in caplog.text


async def test_the_child_sends_progress_outputs_and_result(sample_catalog: Path) -> None:
    progress: list[tuple[str, float]] = []
    outputs: list[str] = []

    async def output(name: str, data: bytes, media_type: str) -> None:
        assert data and media_type
        outputs.append(name)

    stop = pipeline_process.new_stop_event()
    result = await pipeline_process.run_pipeline(
        _job(sample_catalog, {"side_km": 0.8}), stop, lambda step, pct, msg: progress.append((step, pct)), output
    )
    assert progress[-1] == ("done", 100.0) and [p for _, p in progress] == sorted(p for _, p in progress)
    # every output the run commits comes from the child, the report included (it is CPU work on
    # client-sized input, so it runs under the run's time limits); the result is only a summary
    assert {"results.json", "legal.json", "report.html"} <= set(outputs), outputs
    assert any(name.startswith("layers/") for name in outputs), outputs
    assert isinstance(result, pipeline_process.PipelineSummary) and result.has_legal
    assert result.step_durations_s
    assert pipeline_process.active_pids() == {}


async def test_hard_time_limit_kills_the_child(make_service: Any, tmp_path: Path) -> None:
    # the slowed worker's pipeline sleeps 10 minutes after its first progress report, far from any
    # step boundary: only the hard limit (the queue's job timeout) can end the run
    # 15 s: the limit counts from the queue's call, and a busy machine can take seconds to fork the child
    svc = await make_service(AETHERA_RUN_SOFT_TIME_LIMIT_S="15", AETHERA_RUN_HARD_TIME_LIMIT_S="15")
    worker = _slow_worker(svc.env, tmp_path / "worker.log")
    try:
        # the limit counts from the job's start: let the worker's forkserver finish importing the analysis
        # stack first, so the limit is spent inside the pipeline, as the test means, on a busy machine too
        await kit.wait_for(_prepared(tmp_path / "worker.log"), timeout_s=120)
        answer = await _start_run(svc.client, {"side_km": 0.8})
        pid = await _pipeline_child(tmp_path / "worker.log")
        final = await kit.poll_task(svc.client, answer["task_id"], timeout_s=90)
        assert final["status"] == "FAILED" and final["error_code"] == "time_limit_exceeded", final
        await _until_gone({pid})  # the pid no longer exists: neither running nor a zombie
        assert worker.poll() is None  # the worker lives on
    finally:
        _stop(worker)


async def test_cancelling_a_running_run_stops_its_child(make_service: Any, tmp_path: Path) -> None:
    svc = await make_service()
    c = svc.client
    worker = _slow_worker(svc.env, tmp_path / "worker.log", delay_s=1.0)  # a second per step
    try:
        answer = await _start_run(c, {"side_km": 0.8})
        pid = await _pipeline_child(tmp_path / "worker.log")
        await _progress(c, answer["task_id"])  # progress from the child reaches GET /tasks
        assert (await c.delete(f"/tasks/{answer['task_id']}")).status == 202
        final = await kit.poll_task(c, answer["task_id"], timeout_s=60)
        assert final["status"] == "REVOKED", final
        await _until_gone({pid})  # stopped at its next step boundary, and reaped
    finally:
        _stop(worker)


async def test_the_child_dies_with_a_sigkilled_worker(make_service: Any, tmp_path: Path) -> None:
    # the slowed worker's pipeline sleeps 10 minutes after its first progress report: without its
    # watch on the worker, the child would outlive the worker for that long
    svc = await make_service()
    worker = _slow_worker(svc.env, tmp_path / "worker.log")
    try:
        answer = await _start_run(svc.client, {"side_km": 0.8})
        await kit.poll_task(svc.client, answer["task_id"], until={"PROCESSING"}, timeout_s=90, interval_s=0.05)
        await _progress(svc.client, answer["task_id"])  # a worker process's child reports too
        pid = await _pipeline_child(tmp_path / "worker.log")
        family = _descendants(worker.pid)
        assert pid in family
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        # nothing the worker started runs on (a zombie only waits for this container's init to reap it)
        await _until_gone(family, zombie_ok=True)
    finally:
        _stop(worker)


def _spin_on(flag: Any) -> None:
    while True:
        flag.is_set()


def test_a_child_killed_while_reading_the_stop_flag_cannot_wedge_the_worker() -> None:
    """The flag is read thousands of times a second by a child that is SIGKILLed at seeded moments; the
    worker's side must still set and read it at once (a lock-based Event could be left locked by the
    dead child, blocking the worker's event loop forever)."""
    import random
    import threading

    rng = random.Random(7)
    ctx = pipeline_process._mp()
    flag = pipeline_process.new_stop_event()
    for _ in range(10):
        child = ctx.Process(target=_spin_on, args=(flag,), daemon=True)
        child.start()
        threading.Event().wait(rng.uniform(0.0, 0.05))  # some moment of its reading
        child.kill()
        child.join()
        done = threading.Event()

        def use() -> None:
            flag.set()
            assert flag.is_set()
            done.set()

        threading.Thread(target=use, daemon=True).start()
        assert done.wait(30), "the stop flag is blocked by a dead child"
