"""The run lifecycle under faults (docs/architecture.md, "Run lifecycle"): every invariant attacked with real processes.

- a worker partitioned from Redis (a TCP proxy that stops forwarding) mid-run past its lease;
- SIGKILL at each boundary of an attempt (after pick-up, mid-step, after outputs before the commit,
  after the commit before the Redis copy), on both storage backends;
- a Redis blip at the final write;
- a seeded randomized schedule of worker kills, Redis restarts with and without data, storage errors
  and cancellations over 200 runs.

After each: the run is final exactly once, `GET /tasks`, `GET /runs/{id}` and the stored record agree,
and a COMPLETED run's export unzips with every CRC right and holds exactly the committed attempt's files.
"""

from __future__ import annotations

import io
import json
import random
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from blackhole import BlackHoleProxy
from faultstack import BOUNDARY_WORKER, FINAL, PATIENCE_S, Stack, s3_settings

# long enough that a healthy worker on two busy cores keeps its lease (at 4 s, load 20+ made a healthy
# rescuer miss its heartbeat and hand the run on once more)
LEASE_S = 6.0
CHAOS_WORKER = Path(__file__).with_name("chaos_worker.py")


# --- what every test checks at the end ----------------------------------------------------------


def disagreement(stack: Stack, run_id: str) -> str | None:
    """None when the task, the run and the stored record tell one final story (and a COMPLETED run's
    export is whole and made of the committed attempt's files only); else what is wrong."""
    task = stack.task(run_id)
    run = stack.request("GET", f"/runs/{run_id}")
    if task.status != 200 or run.status != 200:
        return f"task {task.status}, run {run.status}"
    record = stack.run_record(run_id)
    statuses = {task.json()["status"], run.json()["status"], record["status"]}
    if len(statuses) != 1:
        return f"task {task.json()['status']}, run {run.json()['status']}, record {record['status']}"
    status = record["status"]
    export = stack.request("GET", f"/runs/{run_id}/export", timeout_s=60)
    if status != "COMPLETED":
        return None if export.status == 409 else f"{status} run: export answered {export.status}"
    if export.status != 200:
        return f"COMPLETED run: export answered {export.status}"
    generation = record["output_generation"]
    if generation != record["generation"]:
        return f"committed generation {generation} is not the record's generation {record['generation']}"
    with zipfile.ZipFile(io.BytesIO(export.body)) as archive:
        bad = archive.testzip()  # reads every member and checks its CRC-32
        if bad is not None:
            return f"member {bad} has a wrong CRC"
        manifest = json.loads(archive.read("manifest.json"))
        for member in manifest["members"]:
            if member["name"] == "aoi.geojson":
                continue
            stored = stack.read_object(f"runs/{run_id}/attempts/{generation}/{member['name']}")
            if stored != archive.read(member["name"]):
                return f"export member {member['name']} is not generation {generation}'s file"
    if stack.request("GET", f"/runs/{run_id}/results").body != stack.read_object(
        f"runs/{run_id}/attempts/{generation}/results.json"
    ):
        return "results are not the committed generation's"
    return None


def assert_agrees(stack: Stack, run_id: str) -> None:
    problem = disagreement(stack, run_id)
    assert problem is None, f"run {run_id}: {problem}\n{stack.logs()}"


# --- a partition between one worker and Redis ---------------------------------------------------


@pytest.mark.slow(2)
def test_a_worker_cut_off_from_redis_stops_and_only_the_new_attempt_is_committed(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(AETHERA_RUN_LEASE_S=str(LEASE_S))
    stack.start_api()
    assert stack.redis.port is not None
    proxy = BlackHoleProxy("127.0.0.1", stack.redis.port)  # a partition: connections hang, nothing passes
    try:
        cut_off = stack.start_worker(step_delay_s=1.0, extra_env={"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"})
        stack.wait_worker_ready(cut_off)
        project_id = stack.create_project()
        run_id = stack.create_run(project_id)
        stack.wait_until(lambda: stack.task(run_id).json().get("progress"), 120, "no progress reported")
        other = stack.start_worker()
        stack.wait_worker_ready(other)

        proxy.hang()
        cut_at = time.monotonic()
        stack.wait_until(lambda: stack.run_record(run_id)["generation"] >= 2, PATIENCE_S, "the run was not taken over")
        taken_s = time.monotonic() - cut_at
        final = stack.wait_for_status(run_id, FINAL, 180)
        assert final["status"] == "COMPLETED", f"{final}\n{stack.logs()}"
        # the cut-off worker noticed by itself (its lease could not be renewed) and wrote nothing more
        stack.wait_until(lambda: "lease-lost" in stack.log_of(cut_off), PATIENCE_S, "the cut-off worker did not stop")
        committed = stack.read_object(f"runs/{run_id}/run.json")
        proxy.resume()
        stack.wait_until(
            lambda: "worker heartbeat restored" in stack.log_of(cut_off),
            PATIENCE_S,
            "the cut-off worker did not reach Redis again",
        )
        assert stack.read_object(f"runs/{run_id}/run.json") == committed
        record = stack.run_record(run_id)
        print(
            f"partition: taken over {taken_s:.2f} s after the cut (lease {LEASE_S:g} s); "
            f"record generation {record['generation']}, attempts {record['attempts']}"
        )
        stack.assert_moved_on_by_recovery(run_id)  # by the lease (the cause, not a number of seconds)
        # the new attempt committed (generation 2, or later if even `other` lost a lease on busy cores)
        assert record["output_generation"] == record["generation"] >= 2, record
        assert "attempt generation 1 is no longer current" not in stack.log_of(other)
        assert_agrees(stack, run_id)
    finally:
        proxy.close()


# --- SIGKILL at each boundary of an attempt ------------------------------------------------------


BOUNDARIES = ("pickup", "mid-step", "commit", "copy")


@pytest.mark.slow(2)
@pytest.mark.timeout(1500)  # four kills and four take-overs in a row, each waiting on a lease
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_sigkill_at_every_boundary_of_an_attempt(
    make_stack: Callable[..., Stack], s3_server: dict[str, object], backend: str, tmp_path: Path
) -> None:
    settings = s3_settings(str(s3_server["url"]), "aethera-boundaries") if backend == "s3" else {}
    # attempts to spare: a loaded machine may make even the rescuer lose a lease, which costs one more
    stack = make_stack(AETHERA_RUN_LEASE_S=str(LEASE_S), AETHERA_RUN_MAX_ATTEMPTS="6", **settings)
    stack.start_api()
    project_id = stack.create_project()
    rescuer = stack.start_worker()
    stack.wait_worker_ready(rescuer)
    report = []
    for boundary in BOUNDARIES:
        pause_dir = tmp_path / boundary
        pause_dir.mkdir()
        rescuer.send_signal(signal.SIGSTOP)  # the boundary worker must be the one that takes the run
        env = {
            "AETHERA_TEST_PAUSE_DIR": str(pause_dir),
            "AETHERA_TEST_PAUSE_AT": boundary,
            "AETHERA_TEST_STEP_DELAY_S": "30" if boundary == "mid-step" else "0",
        }
        victim = stack.start_worker(script=BOUNDARY_WORKER, extra_env=env)
        run_id = stack.create_run(project_id)
        if boundary == "mid-step":
            stack.wait_until(
                lambda: (stack.task(run_id).json().get("progress") or {}).get("step"), 120, "the run did not start"
            )
        else:
            stack.wait_until(
                lambda: (pause_dir / f"paused-{boundary}").exists(), 120, f"the worker did not reach {boundary}"
            )
        rescuer.send_signal(signal.SIGCONT)
        stack.kill(victim)
        killed_at = time.monotonic()

        def settled() -> bool:
            record = stack.run_record(run_id)
            return record["status"] in FINAL or record["generation"] >= 2

        stack.wait_until(settled, PATIENCE_S, f"{boundary}: the run was left behind")
        settled_s = time.monotonic() - killed_at
        final = stack.wait_for_status(run_id, FINAL, 180)
        record = stack.run_record(run_id)
        report.append(
            f"{boundary}: {final['status']} in generation {record['generation']} "
            f"(moved on {settled_s:.2f} s after the kill)"
        )
        assert final["status"] == "COMPLETED", f"{boundary}: {final}\n{stack.logs()}"
        if boundary == "copy":
            # killed after its commit: nothing moves on, the committed attempt is the answer
            assert record["generation"] == record["output_generation"] == 1, (boundary, record)
        else:
            # moved on by the lease, not by arq's job timeout; the committed attempt is a later one (2, or
            # more when the machine was so busy that a healthy worker too lost its lease: fenced, not wrong)
            stack.assert_moved_on_by_recovery(run_id)
            assert record["generation"] == record["output_generation"] >= 2, (boundary, record)
        assert_agrees(stack, run_id)
    print(f"{backend}: " + "; ".join(report))


# --- a Redis blip at the final write -------------------------------------------------------------


def test_redis_blip_at_the_final_write(make_stack: Callable[..., Stack], tmp_path: Path) -> None:
    stack = make_stack(AETHERA_RUN_LEASE_S=str(LEASE_S))
    stack.start_api()
    env = {"AETHERA_TEST_PAUSE_DIR": str(tmp_path), "AETHERA_TEST_PAUSE_AT": "copy"}
    worker = stack.start_worker(script=BOUNDARY_WORKER, extra_env=env)
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    stack.wait_until(lambda: (tmp_path / "paused-copy").exists(), 120, "the run did not reach its commit")
    # Redis keeps (in its snapshot) the copy that says PROCESSING; the final copy is never written
    stack.stop_redis(keep_data=True)
    (tmp_path / "go").touch()
    stack.wait_until(lambda: "task copy not written" in stack.log_of(worker), PATIENCE_S, "the final copy was written")
    stack.start_redis()
    first = stack.task(run_id)  # the first poll after Redis is back
    assert first.status == 200 and first.json()["status"] == "COMPLETED", f"{first}\n{stack.logs()}"
    assert_agrees(stack, run_id)


# --- a seeded randomized fault schedule ----------------------------------------------------------


SCHEDULE_SEED = 20261203
# Every kind of fault, each at least once, in a seeded random order: one fault per wave of runs, so
# each lands while the runs of its wave are queued, running or finishing (the phase is what varies).
# Storage errors (p = 0.01 per call, about 20 over the schedule) and cancellations (every wave) come on
# top. 200 runs with a fault drawn per wave of 20 hit the same kinds, but some only by luck and in
# 2-9 minutes; this covers each kind by construction in about a quarter of the runs.
SCHEDULE_FAULTS = ("kill", "kill", "kill", "redis restart (data kept)", "redis restart (emptied)", "none")
WAVE_RUNS = 8


@pytest.mark.slow(3)
@pytest.mark.timeout(1500)  # 48 runs through six faults, then every run checked end to end
def test_randomized_fault_schedule(make_stack: Callable[..., Stack]) -> None:
    rng = random.Random(SCHEDULE_SEED)
    faults = list(SCHEDULE_FAULTS)
    rng.shuffle(faults)
    lease_s = 3.0
    stack = make_stack(
        AETHERA_RUN_LEASE_S=str(lease_s),
        AETHERA_RUN_MAX_ATTEMPTS="4",
        AETHERA_RETRY_BACKOFF_BASE_S="0.2",
        AETHERA_RETRY_BACKOFF_MAX_S="1",
    )
    stack.start_api()
    chaos_env = {"AETHERA_TEST_STORAGE_FAULT_P": "0.01", "AETHERA_TEST_STORAGE_FAULT_SEED": str(SCHEDULE_SEED)}

    def start_worker() -> subprocess.Popen[bytes]:
        return stack.start_worker(script=CHAOS_WORKER, extra_env=chaos_env)

    workers = [start_worker() for _ in range(2)]
    for w in workers:
        stack.wait_worker_ready(w)
    project_id = stack.create_project()
    run_ids: list[str] = []
    tally = {
        "kill": 0,
        "redis restart (data kept)": 0,
        "redis restart (emptied)": 0,
        "none": 0,
        "cancels": 0,
        "cancels refused (already final)": 0,
    }

    def finished() -> int:
        done = 0
        for run_id in run_ids:
            raw = stack.read_object(f"runs/{run_id}/run.json")
            done += raw is not None and json.loads(raw)["status"] in FINAL
        return done

    def post(n: int) -> None:
        for _ in range(n):
            offset = rng.uniform(-4.0, 4.0)
            # reuse off: the schedule attacks the computation of every run
            resp = stack.request(
                "POST",
                f"/projects/{project_id}/runs",
                {"project_type": "solar", "config": {"capacity_mw": 5, "reuse": False}, "aoi_geojson": _aoi(offset)},
            )
            assert resp.status == 202, resp
            run_ids.append(resp.json()["run_id"])

    for fault in faults:
        post(WAVE_RUNS)
        done_before = finished()
        if fault == "kill":
            victim = rng.randrange(len(workers))
            stack.kill(workers[victim])
            workers[victim] = start_worker()
        elif fault == "redis restart (data kept)":
            stack.stop_redis(keep_data=True)
            stack.start_redis()
        elif fault == "redis restart (emptied)":
            stack.stop_redis(keep_data=False)
            stack.start_redis()
        tally[fault] += 1
        for run_id in rng.sample(run_ids[-WAVE_RUNS:], 2):  # the newest wave: queued, running or just done
            resp = stack.request("DELETE", f"/tasks/{run_id}")
            assert resp.status in (200, 202, 409), resp
            tally["cancels" if resp.status != 409 else "cancels refused (already final)"] += 1
        # the next wave goes in once the service has made progress on this one (an event, not a pause)
        stack.wait_until(
            lambda: finished() >= min(len(run_ids), done_before + 3), PATIENCE_S, "no run finished after the fault"
        )

    for w in workers:
        if w.poll() is None:
            continue
        workers[workers.index(w)] = start_worker()
    # every run ends (polled; the generous bound only stops a hung schedule, `stuck` below says which)
    try:
        stack.wait_until(lambda: finished() == len(run_ids), 300, "not every run finished", every_s=0.5)
    except AssertionError:
        pass
    lost = stuck = disagreeing = 0
    problems = []
    for run_id in run_ids:
        raw = stack.read_object(f"runs/{run_id}/run.json")
        if raw is None or stack.task(run_id).status == 404:
            lost += 1
            continue
        if json.loads(raw)["status"] not in FINAL:
            stuck += 1
            problems.append(f"{run_id} stuck: {json.loads(raw)['status']}")
            continue
        problem = disagreement(stack, run_id)
        if problem is not None:
            disagreeing += 1
            problems.append(f"{run_id}: {problem}")
    statuses: dict[str, int] = {}
    for run_id in run_ids:
        status = stack.run_record(run_id)["status"]
        statuses[status] = statuses.get(status, 0) + 1
    print(f"runs: {len(run_ids)}, lost: {lost}, stuck: {stuck}, disagreeing: {disagreeing}")
    print(f"faults: {tally}; final states: {statuses}")
    assert (lost, stuck, disagreeing) == (0, 0, 0), "\n".join(problems[:20]) + "\n" + stack.logs()
    assert all(tally[kind] for kind in SCHEDULE_FAULTS), tally  # every kind of fault was dealt


def _aoi(offset_km: float) -> dict[str, object]:
    from faultstack import sample_aoi

    return sample_aoi(east_km=5.0 + offset_km, north_km=-3.0 + offset_km / 2, size_km=0.5)
