"""Dependencies that hang instead of refusing: requests answer 503 within the deadline, never later.

A refused connection fails fast by itself; a hung one (the connection is accepted, the answer never
comes) used to hold an API request for the S3 client's read timeout times its attempts (151 s
measured). `AETHERA_BACKEND_DEADLINE_S` bounds every storage and Redis call of a request. And `/health`
reports storage that answers but cannot be written (a full disk) as down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from blackhole import BlackHoleProxy
from faultstack import PATIENCE_S, Response, Stack, assert_not_5xx_except_unavailable

# every normal call must also fit in it (the API's start-up check gets 3 of them): 1.5 s was too little
# for the moto server on a machine at load 20+
DEADLINE_S = 3.0
# the test's own patience. It does not time the deadline: the backend hangs for ever and the S3 client's
# own read timeout is 60 s (tried twice), so any answer before BOUND_S can only be the deadline's. It
# is 15 deadlines long (below that 60 s) so that busy cores never make a working deadline look late.
BOUND_S = 15 * DEADLINE_S


@pytest.fixture
def proxies() -> Iterator[list[BlackHoleProxy]]:
    made: list[BlackHoleProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def timed(stack: Stack, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[Response, float]:
    """The answer and how long it took; a request unanswered after BOUND_S fails the test (urllib's
    timeout raises), so the test never waits longer than that for one."""
    started = time.monotonic()
    resp = stack.request(method, path, body, auth=auth, timeout_s=BOUND_S)
    return resp, time.monotonic() - started


@pytest.mark.slow
def test_hung_s3_answers_503_within_the_deadline(
    make_stack: Callable[..., Stack], s3_server: dict[str, object], proxies: list[BlackHoleProxy]
) -> None:
    import boto3

    bucket = "aethera-hung"
    boto3.client(
        "s3",
        endpoint_url=str(s3_server["url"]),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    proxy = BlackHoleProxy("127.0.0.1", int(s3_server["port"]))  # type: ignore[call-overload]
    proxies.append(proxy)
    stack = make_stack(
        STORAGE_BACKEND="s3",
        S3_ENDPOINT_URL=proxy.url("http"),
        S3_BUCKET=bucket,
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_REGION="us-east-1",
        AETHERA_BACKEND_DEADLINE_S=str(DEADLINE_S),
    )
    stack.start_api()
    project_id = stack.create_project()
    assert stack.request("GET", f"/projects/{project_id}").status == 200

    proxy.hang()
    answered: list[tuple[str, int, float]] = []
    for method, path, body in (
        ("GET", f"/projects/{project_id}", None),
        ("GET", "/projects", None),
        ("POST", "/projects", {"name": "while S3 hangs"}),
        ("GET", f"/runs/{'0' * 32}", None),
    ):
        resp, took_s = timed(stack, method, path, body)
        answered.append((f"{method} {path}", resp.status, took_s))
        assert resp.status == 503, f"{method} {path}: {resp}"
        assert_not_5xx_except_unavailable(resp, f"{method} {path}")
        assert "127.0.0.1" not in resp.body.decode(), resp  # no endpoint address in the answer

    health, took_s = timed(stack, "GET", "/health", auth=False)
    answered.append(("GET /health", health.status, took_s))
    assert health.status == 503, health
    assert health.json()["storage"]["ok"] is False and health.json()["redis"]["ok"] is True, health
    assert str(proxy.port) not in health.body.decode(), health
    print("hung S3:", ", ".join(f"{what} -> {status} in {s:.2f} s" for what, status, s in answered))
    assert proxy.accepted > 0

    proxy.resume()
    stack.wait_until(
        lambda: stack.request("GET", f"/projects/{project_id}").status == 200,
        PATIENCE_S,
        "the API did not recover after S3 answered again",
    )
    assert "Traceback" not in stack.log_of(stack.api), stack.logs()  # type: ignore[arg-type]


def test_hung_redis_answers_503_within_the_deadline(
    make_stack: Callable[..., Stack], proxies: list[BlackHoleProxy]
) -> None:
    stack = make_stack(AETHERA_BACKEND_DEADLINE_S=str(DEADLINE_S))
    proxy = BlackHoleProxy("127.0.0.1", stack.redis.port)
    proxies.append(proxy)
    stack.env["REDIS_URL"] = proxy.url("redis", "/0")
    stack.start_api()
    project_id = stack.create_project()
    run_id = stack.create_run(project_id)  # queued through the proxy while it still relays

    proxy.hang()
    answered: list[tuple[str, int, float]] = []
    resp, took_s = timed(stack, "GET", f"/tasks/{run_id}")
    answered.append(("GET /tasks/{id}", resp.status, took_s))
    # the task answers from the run record in storage, or 503; never a hang, never another 5xx
    assert resp.status in (200, 503), resp
    assert_not_5xx_except_unavailable(resp, "GET /tasks/{id}")

    body = {"project_type": "solar", "aoi_geojson": _square(), "config": {"capacity_mw": 10}}
    resp, took_s = timed(stack, "POST", f"/projects/{project_id}/runs", body)
    answered.append(("POST /projects/{id}/runs", resp.status, took_s))
    assert resp.status == 503, resp
    assert_not_5xx_except_unavailable(resp, "POST /projects/{id}/runs")

    health, took_s = timed(stack, "GET", "/health", auth=False)
    answered.append(("GET /health", health.status, took_s))
    assert health.status == 503, health
    assert health.json()["redis"]["ok"] is False and health.json()["storage"]["ok"] is True, health
    ready, took_s = timed(stack, "GET", "/ready", auth=False)
    answered.append(("GET /ready", ready.status, took_s))
    assert ready.status == 200, ready  # readiness is this process's: reads are served from storage
    print("hung Redis:", ", ".join(f"{what} -> {status} in {s:.2f} s" for what, status, s in answered))

    proxy.resume()
    stack.wait_until(
        lambda: stack.request("GET", "/health", auth=False).status == 200,
        PATIENCE_S,
        "the API did not recover after Redis answered again",
    )


def _square() -> dict[str, Any]:
    from faultstack import sample_aoi

    return sample_aoi()


@pytest.mark.slow
def test_health_reports_storage_that_cannot_be_written(make_stack: Callable[..., Stack]) -> None:
    # a full disk: every file the API writes is refused past 0 bytes (EFBIG), as root too; the root
    # directory still exists and looks writable, which is all a ping sees
    stack = make_stack()
    stack.start_api(max_file_bytes=0)
    health = stack.request("GET", "/health", auth=False, timeout_s=BOUND_S)
    assert health.status == 503, health
    storage = health.json()["storage"]
    assert storage["ok"] is False, health
    assert "cannot be written" in storage["detail"] and "too large" in storage["detail"], storage
    assert str(stack.storage_root) not in health.body.decode() and "/tmp" not in health.body.decode(), health

    ready = stack.request("GET", "/ready", auth=False, timeout_s=BOUND_S)
    assert ready.status == 503 and ready.json()["storage"]["ok"] is False, ready
    assert "cannot be written" in ready.json()["storage"]["detail"], ready
    # the probe left nothing behind
    assert not [p for p in stack.storage_root.rglob("*") if p.is_file()]


def test_a_health_poll_storm_is_answered_and_leaves_nothing_behind(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start_api()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: stack.request("GET", "/health", auth=False), range(64)))
    assert {a.status for a in answers} == {200}, answers[:3]
    assert all(a.json()["storage"] == {"ok": True, "detail": None} for a in answers)
    # probes write under .health/ and delete what they wrote
    assert not [p for p in stack.storage_root.rglob("*") if p.is_file()]
