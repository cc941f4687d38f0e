"""Redis goes away: during polling and a run, and coming back empty with runs queued."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from faultstack import (
    FINAL,
    PATIENCE_S,
    RECOVERY_TRIES,
    Stack,
    assert_not_5xx_except_unavailable,
    requests_until,
    sample_aoi,
)


def check_while_redis_is_down(stack: Stack, project_id: str, run_id: str, until: Callable[[], bool]) -> None:
    """Exercise the API while Redis is down, round after round until `until()` (an event of the outage,
    not a time window): storage-only reads work, what needs Redis answers 503."""
    run_body = {"project_type": "solar", "aoi_geojson": sample_aoi(), "config": {"capacity_mw": 10}}
    give_up = time.monotonic() + PATIENCE_S
    seen_poll_statuses: set[int] = set()
    rounds = 0
    while rounds == 0 or not until():
        assert time.monotonic() < give_up, f"the outage's event never came\n{stack.logs()}"
        rounds += 1
        poll = stack.task(run_id)
        assert_not_5xx_except_unavailable(poll, "GET /tasks")
        seen_poll_statuses.add(poll.status)
        if poll.status == 200:
            # answered from the run record in storage: it must say something true, not PENDING-forever noise
            assert poll.json()["task_id"] == run_id
        health = stack.request("GET", "/health", auth=False)
        assert health.status == 503, health
        for path in ("/projects", f"/projects/{project_id}", f"/runs/{run_id}", "/runs"):
            resp = stack.request("GET", path)
            assert_not_5xx_except_unavailable(resp, f"GET {path}")
        create = stack.request("POST", f"/projects/{project_id}/runs", run_body)
        assert create.status == 503, create
        assert create.json()["code"] == "backend_unavailable"
        time.sleep(0.2)  # the loop's pace; what ends it is `until`
    assert seen_poll_statuses <= {200, 503}


def wait_recovered(stack: Stack, project_id: str) -> tuple[int, str]:
    """Tries (health, then a run queued) until the API works normally again, and the queued run."""
    run_ids: list[str] = []
    body = {"project_type": "solar", "aoi_geojson": sample_aoi(east_km=-2.0), "config": {"capacity_mw": 10}}

    def working() -> str | None:
        if stack.request("GET", "/health", auth=False).status != 200:
            return None
        resp = stack.request("POST", f"/projects/{project_id}/runs", body)
        assert_not_5xx_except_unavailable(resp, "POST runs while recovering")
        if resp.status != 202:
            return None
        run_ids.append(str(resp.json()["run_id"]))
        return run_ids[-1]

    tries = requests_until(stack, working, "the API did not recover")
    return tries, run_ids[-1]


def all_run_ids(stack: Stack) -> set[str]:
    return {p.name for p in (stack.storage_root / "runs").iterdir() if (p / "run.json").exists()}


@pytest.mark.slow
@pytest.mark.parametrize("keep_data", [True, False], ids=["restarted", "restarted-empty"])
def test_redis_stopped_during_polling_and_a_run(make_stack: Callable[..., Stack], keep_data: bool) -> None:
    stack = make_stack()
    stack.start_api()
    worker = stack.start_worker(step_delay_s=1.0)
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    stack.wait_for_status(run_id, {"PROCESSING"}, 120)

    stack.stop_redis(keep_data=keep_data)
    # Redis stays down until the worker has met the outage (a heartbeat refused), by construction
    check_while_redis_is_down(
        stack, project_id, run_id, until=lambda: "worker heartbeat failed" in stack.log_of(worker)
    )
    stack.start_redis()  # returns once Redis answers PING
    tries, new_run = wait_recovered(stack, project_id)
    print(f"Redis back ({'with' if keep_data else 'without'} its data): API queues runs again at try {tries}")
    assert tries <= RECOVERY_TRIES, f"the API worked again only at try {tries}\n{stack.logs()}"

    # every run ends: the one cut in the middle, the ones refused while Redis was down, the new one
    for rid in all_run_ids(stack):
        final = stack.wait_for_status(rid, FINAL, 180)
        if final["status"] == "FAILED":
            assert final["error"], final
        else:
            assert final["status"] == "COMPLETED", final
    assert stack.task(run_id).json()["status"] in ("COMPLETED", "FAILED")
    assert stack.task(new_run).json()["status"] == "COMPLETED", stack.logs()
    # nothing lost: the project and every run are still served
    assert project_id in {p["id"] for p in stack.request("GET", "/projects").json()}
    listed = {r["run_id"] for r in stack.request("GET", "/runs?limit=500").json()}
    assert all_run_ids(stack) <= listed
    assert worker.poll() is None, f"the worker exited\n{stack.logs()}"


@pytest.mark.slow
def test_redis_restarted_empty_with_runs_queued(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start_api()
    project_id = stack.create_project()
    run_ids = [stack.create_run(project_id, east_km=e) for e in (-4.0, 0.5, 4.0)]
    for rid in run_ids:
        assert stack.task(rid).json()["status"] == "PENDING"

    stack.stop_redis(keep_data=False)  # the queue, the task records, everything in Redis is gone
    stack.start_redis()
    # the API still knows every task: it answers from the run records in storage
    for rid in run_ids:
        resp = stack.task(rid)
        assert resp.status == 200 and resp.json()["status"] == "PENDING", resp

    stack.start_worker()
    for rid in run_ids:
        final = stack.wait_for_status(rid, FINAL, 180)
        assert final["status"] == "COMPLETED", f"{final}\n{stack.logs()}"
