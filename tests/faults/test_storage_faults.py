"""Storage refuses writes (local disk full or blocked) or goes away (S3 endpoint down)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faultstack import FINAL, RECOVERY_TRIES, Stack, assert_not_5xx_except_unavailable, requests_until, wait_reachable


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_no_torn_files(root: Path) -> None:
    """Every stored JSON document parses: a failed write left the old version or nothing, never half."""
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".geojson"):
            json.loads(path.read_bytes())


def test_blocked_directory_fails_the_run_and_keeps_previous_files(make_stack: Callable[..., Stack]) -> None:
    # a regular file where the run's `layers/` directory must go: every layer write is refused, the way a
    # permission error refuses it (tests run as root, where permissions refuse nothing)
    stack = make_stack()
    stack.start_api()
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    attempt_dir = stack.storage_root / "runs" / run_id / "attempts" / "1"  # where its first attempt writes
    attempt_dir.mkdir(parents=True)
    (attempt_dir / "layers").write_bytes(b"in the way")
    before = snapshot(stack.storage_root)

    stack.start_worker()
    final = stack.wait_for_status(run_id, FINAL, 180)
    assert final["status"] == "FAILED", f"{final}\n{stack.logs()}"
    assert final["error_code"] == "storage_write_failed", final
    assert final["error"] and str(stack.storage_root) not in final["error"]
    after = snapshot(stack.storage_root)
    unchanged = {k for k in before if not k.startswith(f"runs/{run_id}/run.json") and "index/" not in k}
    assert {k: after.get(k) for k in unchanged} == {k: before[k] for k in unchanged}
    assert_no_torn_files(stack.storage_root)
    assert stack.run_record(run_id)["status"] == "FAILED"


@pytest.mark.slow
def test_full_disk_fails_the_run_and_keeps_previous_files(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start_api()
    project_id = stack.create_project()
    done_id = stack.create_run(project_id, east_km=-3.0)
    worker = stack.start_worker()
    assert stack.wait_for_status(done_id, FINAL, 180)["status"] == "COMPLETED"
    stack.kill(worker)
    sizes = sorted(p.stat().st_size for p in (stack.storage_root / "runs" / done_id).rglob("*") if p.is_file())
    run_json_size = (stack.storage_root / "runs" / done_id / "run.json").stat().st_size
    # the largest output does not fit on the "disk", a run record does
    limit = max(run_json_size * 2, 8192)
    print("sizes", sizes, "limit", limit)
    assert sizes[-1] > limit, f"outputs too small for this test: {sizes}"

    run_id = stack.create_run(project_id)
    before = snapshot(stack.storage_root)
    stack.start_worker(max_file_bytes=limit)
    final = stack.wait_for_status(run_id, FINAL, 180)
    assert final["status"] == "FAILED", f"{final}\n{stack.logs()}"
    assert final["error_code"] == "storage_write_failed", final
    assert "too large" in final["error"] or "full" in final["error"], final
    after = snapshot(stack.storage_root)
    kept = {k for k in before if k.startswith(f"runs/{done_id}/") or k.startswith("projects/")}
    assert {k: after.get(k) for k in kept} == {k: before[k] for k in kept}
    assert_no_torn_files(stack.storage_root)
    # the completed run is still served whole
    assert stack.request("GET", f"/runs/{done_id}/results").status == 200


@pytest.mark.slow
def test_s3_down_answers_503_and_the_run_recovers(
    make_stack: Callable[..., Stack], s3_server: dict[str, object]
) -> None:
    import boto3

    bucket = "aethera-faults"
    boto3.client(
        "s3",
        endpoint_url=str(s3_server["url"]),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    stack = make_stack(
        STORAGE_BACKEND="s3",
        S3_ENDPOINT_URL=str(s3_server["url"]),
        S3_BUCKET=bucket,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_REGION="us-east-1",
    )
    stack.start_api()
    worker = stack.start_worker(step_delay_s=1.0)
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    stack.wait_for_status(run_id, {"PROCESSING"}, 120)

    s3_server["stop"]()  # type: ignore[operator]
    # S3 stays down until the worker has been refused by it (a storage call of the run failed and is
    # being retried): the outage overlaps a storage call by construction, not by luck
    give_up = time.monotonic() + 120
    while "trying again in" not in stack.log_of(worker):
        if worker.poll() is not None or time.monotonic() > give_up:
            raise AssertionError(f"the worker made no storage call while S3 was down\n{stack.logs()}")
        for method, path, body in (
            ("GET", "/projects", None),
            ("GET", f"/projects/{project_id}", None),
            ("GET", f"/runs/{run_id}", None),
            ("POST", "/projects", {"name": "while S3 is down"}),
        ):
            resp = stack.request(method, path, body)
            assert resp.status == 503, f"{method} {path}: {resp}"
            assert_not_5xx_except_unavailable(resp, f"{method} {path}")
        assert stack.request("GET", "/health", auth=False).status == 503
        time.sleep(0.2)  # the loop's pace; what ends it is the worker's log line above

    s3_server["start"]()  # type: ignore[operator]
    wait_reachable(str(s3_server["url"]))
    # no cool-down after an outage: the API works again at once, counted in requests, not seconds
    tries = requests_until(stack, lambda: stack.request("GET", "/projects").status == 200, "the API did not recover")
    print(f"S3 back: API answering again at request {tries}")
    assert tries <= RECOVERY_TRIES, f"the API answered again only at request {tries}\n{stack.logs()}"

    final = stack.wait_for_status(run_id, FINAL, 180)
    assert final["status"] in ("COMPLETED", "FAILED"), final
    if final["status"] == "FAILED":
        assert final["error"], final
    # the refused storage call was retried with backoff (the call itself, or the attempt when S3 stayed
    # away for longer than the call's retries)
    assert "trying again in" in stack.log_of(worker), stack.logs()
    assert project_id in {p["id"] for p in stack.request("GET", "/projects").json()}


def test_a_disk_too_full_to_start_the_run_still_shows_the_reason(make_stack: Callable[..., Stack]) -> None:
    """Not even the run record fits: the run cannot be marked PROCESSING, let alone FAILED in storage. It
    must not sit PENDING with no word: it shows FAILED `storage_write_failed` with the reason at once (kept
    in Redis), and the record says so as soon as the disk takes writes again."""
    stack = make_stack()
    stack.start_api()
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)
    record_size = len(stack.read_object(f"runs/{run_id}/run.json") or b"")
    worker = stack.start_worker(max_file_bytes=record_size // 2)
    final = stack.wait_for_status(run_id, FINAL, 180)
    assert final["status"] == "FAILED", f"{final}\n{stack.logs()}"
    assert final["error_code"] == "storage_write_failed" and "too large" in final["error"], final
    assert stack.request("GET", f"/runs/{run_id}").json()["status"] == "FAILED"
    assert stack.run_record(run_id)["status"] == "PENDING"  # storage has not taken it yet

    stack.kill(worker)
    stack.start_worker()  # a disk with room again
    stack.wait_until(
        lambda: stack.run_record(run_id)["status"] == "FAILED", 60, "recovery did not store the final state"
    )
    record = stack.run_record(run_id)
    assert record["error_code"] == "storage_write_failed" and record["error"] == final["error"], record
    assert stack.task(run_id).json()["status"] == "FAILED"
