"""Metrics: worker observations recorded in a real Redis come out of the API's exposition exactly."""

from __future__ import annotations

import asyncio
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from aethera.observability.heartbeat import HeartbeatLoop, beat, worker_ages
from aethera.observability.metrics import (
    RUN_DURATION,
    RUNS_TOTAL,
    STEP_DURATION,
    WORKER_HEARTBEATS,
    ApiMetrics,
    SharedMetrics,
)


def _families(text: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _sample(families: dict, family: str, name: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name} {labels} in {family}")


async def test_shared_counters_and_histograms_from_two_workers(ops_redis: Redis, ops_redis_url: str) -> None:
    # two clients stand for two worker processes (on two machines): the totals add up in Redis
    other = Redis.from_url(ops_redis_url)
    try:
        a, b = SharedMetrics(ops_redis), SharedMetrics(other)
        await a.inc(RUNS_TOTAL, status="COMPLETED")
        await b.inc(RUNS_TOTAL, status="COMPLETED")
        await b.inc(RUNS_TOTAL, status="FAILED")
        await a.observe(RUN_DURATION, 7.0, status="COMPLETED")
        await b.observe(RUN_DURATION, 4000.0, status="COMPLETED")  # past the last bound: +Inf only
        await a.observe(STEP_DURATION, 0.2, step="land_cover")
        await b.observe(STEP_DURATION, 0.3, step="land_cover")
        await b.observe(STEP_DURATION, 12.0, step="receptors")
    finally:
        await other.aclose()

    text = await ApiMetrics().exposition(ops_redis, queue_key=None, workers_seen_within_s=60)
    fam = _families(text)
    assert _sample(fam, "aethera_runs", "aethera_runs_total", status="COMPLETED") == 2
    assert _sample(fam, "aethera_runs", "aethera_runs_total", status="FAILED") == 1
    run = "aethera_run_duration_seconds"
    assert _sample(fam, run, run + "_count", status="COMPLETED") == 2
    assert _sample(fam, run, run + "_sum", status="COMPLETED") == pytest.approx(4007.0)
    assert _sample(fam, run, run + "_bucket", status="COMPLETED", le="10.0") == 1
    assert _sample(fam, run, run + "_bucket", status="COMPLETED", le="3600.0") == 1
    assert _sample(fam, run, run + "_bucket", status="COMPLETED", le="+Inf") == 2
    step = "aethera_run_step_duration_seconds"
    assert _sample(fam, step, step + "_bucket", step="land_cover", le="0.25") == 1
    assert _sample(fam, step, step + "_bucket", step="land_cover", le="0.5") == 2
    assert _sample(fam, step, step + "_count", step="receptors") == 1
    # buckets are cumulative and end at the count
    buckets = [s for s in fam[step].samples if s.name.endswith("_bucket") and s.labels["step"] == "receptors"]
    values = [s.value for s in buckets]
    assert values == sorted(values) and values[-1] == 1 and math.isinf(float(buckets[-1].labels["le"]))


async def test_labels_are_checked(ops_redis: Redis) -> None:
    metrics = SharedMetrics(ops_redis)
    with pytest.raises(ValueError):
        await metrics.inc(RUNS_TOTAL)  # status missing
    with pytest.raises(ValueError):
        await metrics.observe(RUNS_TOTAL, 1.0, status="COMPLETED")  # a counter is not a histogram


async def test_queue_depth_and_workers(ops_redis: Redis) -> None:
    await ops_redis.zadd("test:queue", {"job-a": 1, "job-b": 2, "job-c": 3})
    await beat(ops_redis, "host-1", info={"pid": 1}, ttl_s=30)
    await beat(ops_redis, "host-2", info={"pid": 2}, ttl_s=30)
    # a worker last seen two minutes ago (by the Redis clock) is known but not alive
    now_s, _ = await ops_redis.time()
    await ops_redis.zadd("aethera:obs:workers", {"host-old": float(now_s) - 120})

    ages = await worker_ages(ops_redis, max_age_s=3600)
    assert set(ages) == {"host-1", "host-2", "host-old"} and ages["host-old"] >= 119

    fam = _families(await ApiMetrics().exposition(ops_redis, queue_key="test:queue", workers_seen_within_s=60))
    assert _sample(fam, "aethera_queue_depth", "aethera_queue_depth") == 3
    assert _sample(fam, "aethera_workers_alive", "aethera_workers_alive") == 2
    assert _sample(fam, "aethera_worker_heartbeats", "aethera_worker_heartbeats_total") == 2
    age = "aethera_worker_last_heartbeat_age_seconds"
    assert _sample(fam, age, age, worker="host-old") >= 119


async def test_heartbeat_loop_beats_and_forgets_on_stop(ops_redis: Redis) -> None:
    loop = HeartbeatLoop(ops_redis, "host-loop", interval_s=0.05)
    loop.start()
    for _ in range(100):  # wait for a few beats, bounded
        raw = await ops_redis.hget("aethera:obs:counter:" + WORKER_HEARTBEATS.name, "[]")
        if raw is not None and float(raw) >= 3:
            break
        await asyncio.sleep(0.05)
    assert "host-loop" in await worker_ages(ops_redis, max_age_s=60)
    await loop.stop()
    assert "host-loop" not in await worker_ages(ops_redis, max_age_s=60)


async def test_api_metrics_survive_redis_down() -> None:
    metrics = ApiMetrics()
    metrics.observe_request("/projects/{id}", "GET", 200, 0.012)
    metrics.export_bytes.inc(1234)
    # nothing listens on port 1: the shared part fails, the API's own part is still served
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        fam = _families(await metrics.exposition(dead, queue_key="q", workers_seen_within_s=60))
    finally:
        await dead.aclose()
    req = "aethera_http_requests"
    assert _sample(fam, req, req + "_total", route="/projects/{id}", method="GET", status="200") == 1
    dur = "aethera_http_request_duration_seconds"
    assert _sample(fam, dur, dur + "_bucket", route="/projects/{id}", method="GET", le="0.025") == 1
    assert _sample(fam, "aethera_export_bytes_sent", "aethera_export_bytes_sent_total") == 1234
    assert _sample(fam, "aethera_metrics_scrape_errors", "aethera_metrics_scrape_errors_total") == 1
    assert "aethera_runs" not in fam
