"""Benchmark: `GET /tasks/{id}` of the real API against a bare aiohttp handler serving the same JSON.

Method: one embedded Redis, the API (`server.py`, local storage in a temp dir) and a baseline server
(a single aiohttp handler returning the identical bytes from memory) each run as their own process on
127.0.0.1. A separate load-generator process keeps 64 connections busy for 10 s against each server in
turn (API first, then baseline, after a 1 s warm-up each) and records every request's latency.
Printed: requests/s, p50 and p99 of both, and the API/baseline ratios.

The per-client rate limit is switched off (AETHERA_RATE_LIMIT_PER_S=0): one load generator would
otherwise be measured against its own 429s. Everything else of the request path (request id, access
log and metrics middleware, CORS, error middleware, the Redis read) is what production runs.

Bias: the load generator, the server and Redis share the machine's cores, so absolute numbers are
lower than on separate machines; both servers suffer the same, which is why the ratio is the figure
to read. The task record carries live progress, as the frontend polls it while a run works.

Usage: `python bench/api.py [--seconds 10] [--connections 64]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aethera.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

BASELINE = r"""
import sys
from aiohttp import web
body = open(sys.argv[2], "rb").read()
async def handler(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/tasks/{task_id}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

LOADGEN = r"""
import asyncio, json, sys, time
import aiohttp
url, seconds, conns, warmup = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
async def worker(session, stop_at, lat, errors, record_from):
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_at:
            return
        try:
            async with session.get(url) as r:
                await r.read()
                ok = r.status == 200
        except aiohttp.ClientError:
            ok = False
        t1 = time.perf_counter()
        if t0 >= record_from:
            (lat.append(t1 - t0) if ok else errors.append(1))
async def main():
    lat, errors = [], []
    conn = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=conn) as s:
        start = time.perf_counter()
        record_from, stop_at = start + warmup, start + warmup + seconds
        await asyncio.gather(*(worker(s, stop_at, lat, errors, record_from) for _ in range(conns)))
    print(json.dumps({"latencies": lat, "errors": len(errors), "seconds": seconds}))
asyncio.run(main())
"""


def _wait_http(url: str, timeout_s: float = 30.0) -> None:
    async def probe() -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                try:
                    async with s.get(url) as r:
                        if r.status < 500:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit(f"server at {url} did not come up")

    asyncio.run(probe())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _load(url: str, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", LOADGEN, url, str(seconds), str(connections), "1.0"],
                         capture_output=True, check=True, text=True)
    data = json.loads(out.stdout)
    lat = data["latencies"]
    return {
        "requests": len(lat),
        "errors": data["errors"],
        "rps": len(lat) / seconds,
        "p50_ms": _percentile(lat, 0.50) * 1000,
        "p99_ms": _percentile(lat, 0.99) * 1000,
        "mean_ms": statistics.fmean(lat) * 1000,
    }


async def _seed_task(redis_url: str, task_id: str) -> None:
    """A task record as a running worker leaves it (status PROCESSING with progress)."""
    from redis.asyncio import Redis

    from aethera.jobs import records
    from aethera.models import Progress, RunStatus, TaskRecord, utc_now_iso

    now = utc_now_iso()
    record = TaskRecord(
        task_id=task_id, run_id=task_id, project_id=uuid.uuid4().hex, status=RunStatus.PROCESSING,
        progress=Progress(step="land_cover", percent=42.0, message="land cover of the AOI", updated_at=now),
        attempts=1, max_attempts=3, created_at=now, updated_at=now, started_at=now,
    )
    redis = Redis.from_url(redis_url)
    await records.save_task(redis, record)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="aethera-bench-api-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        try:
            api_port, base_port = free_port(), free_port()
            env = {**os.environ, "REDIS_URL": redis.url, "STORAGE_BACKEND": "local",
                   "STORAGE_BASE_PATH": str(Path(tmp) / "storage"), "AETHERA_HOST": "127.0.0.1",
                   "AETHERA_PORT": str(api_port), "AETHERA_LOG_LEVEL": "WARNING", "AETHERA_RATE_LIMIT_PER_S": "0",
                   "AETHERA_DATASETS": str(Path(tmp) / "catalog.toml")}
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env, cwd=tmp))
            task_id = uuid.uuid4().hex
            asyncio.run(_seed_task(redis.url, task_id))
            api_url = f"http://127.0.0.1:{api_port}/tasks/{task_id}"
            _wait_http(api_url)

            async def fetch() -> bytes:
                async with aiohttp.ClientSession() as s, s.get(api_url) as r:
                    assert r.status == 200, r.status
                    return await r.read()

            body = asyncio.run(fetch())
            body_file = Path(tmp) / "body.json"
            body_file.write_bytes(body)
            procs.append(subprocess.Popen([sys.executable, "-c", BASELINE, str(base_port), str(body_file)]))
            base_url = f"http://127.0.0.1:{base_port}/tasks/{task_id}"
            _wait_http(base_url)

            api = _load(api_url, args.seconds, args.connections)
            base = _load(base_url, args.seconds, args.connections)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
            redis.stop()

    print(f"GET /tasks/{{id}}: {args.connections} connections, {args.seconds:g} s each, body {len(body)} bytes")
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in (("api", api), ("baseline", base)):
        print(f"{name:10} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7.0f}")
    print(f"ratio api/baseline: throughput {api['rps'] / base['rps']:.2f}x, "
          f"p50 {api['p50_ms'] / base['p50_ms']:.2f}x, p99 {api['p99_ms'] / base['p99_ms']:.2f}x")


if __name__ == "__main__":
    main()
