"""A worker killed with SIGKILL in the middle of a run: another worker takes the run over through its lease."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from faultstack import PATIENCE_S, Stack

LEASE_S = 4.0


@pytest.mark.slow
def test_killed_worker_run_is_picked_up_and_completes(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(AETHERA_RUN_LEASE_S=str(LEASE_S))
    stack.start_api()
    first = stack.start_worker(step_delay_s=1.0)
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    running = stack.wait_for_status(run_id, {"PROCESSING"}, 120)
    assert running["attempts"] == 1
    second = stack.start_worker(step_delay_s=0.2)
    stack.wait_worker_ready(second)
    stack.wait_until(lambda: stack.task(run_id).json().get("progress"), PATIENCE_S, "no progress reported")

    stack.kill(first)
    killed_at = time.monotonic()

    def taken_over() -> bool:
        task = stack.task(run_id).json()
        return task["status"] in ("PROCESSING", "COMPLETED") and task["attempts"] == 2

    stack.wait_until(taken_over, PATIENCE_S, "the run was not taken over", every_s=0.1)
    taken_s = time.monotonic() - killed_at
    print(f"run taken over {taken_s:.2f} s after SIGKILL (lease {LEASE_S:g} s)")  # a figure, not a verdict
    stack.assert_moved_on_by_recovery(run_id)  # by the lease, not by arq's job timeout

    final = stack.wait_for_status(run_id, {"COMPLETED", "FAILED", "REVOKED"}, 180)
    assert final["status"] == "COMPLETED", f"{final}\n{stack.logs()}"
    record = stack.run_record(run_id)
    assert record["attempts"] == 2 and record["status"] == "COMPLETED"
    assert stack.request("GET", f"/runs/{run_id}/results").status == 200


def test_killed_worker_run_fails_when_no_attempt_is_left(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(AETHERA_RUN_LEASE_S=str(LEASE_S), AETHERA_RUN_MAX_ATTEMPTS="1")
    stack.start_api()
    first = stack.start_worker(step_delay_s=1.0)
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    stack.wait_for_status(run_id, {"PROCESSING"}, 120)
    second = stack.start_worker()
    stack.wait_worker_ready(second)

    stack.kill(first)
    final = stack.wait_for_status(run_id, {"COMPLETED", "FAILED", "REVOKED"}, PATIENCE_S)
    assert final["status"] == "FAILED"
    assert final["error_code"] == "worker_lost"
    assert "no attempts left" in final["error"]
