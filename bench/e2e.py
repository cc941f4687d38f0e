"""Benchmark: 50 small runs end to end through the API and 2 worker processes.

Method: an embedded Redis, the sample region as the dataset catalog, local storage in a temp dir, the
API (`server.py`) and 2 `worker.py` processes (each `AETHERA_WORKER_CONCURRENCY`, default 1 here so
two processes share the two cores), all on 127.0.0.1. 50 runs on different 0.5 km x 0.5 km AOIs are
POSTed at once; each task is polled until final. Latency per run is POST-to-COMPLETED, measured from
the client's clock at the POST to the task record's `finished_at` (server clock, same machine), so the
poll interval does not inflate it. Throughput is runs completed per minute between the first POST and
the last completion. The first run of each worker pays the import of the geospatial stack and the
first open of each dataset; that cost is included, as a fresh deployment would pay it.

The per-client rate limit is off (AETHERA_RATE_LIMIT_PER_S=0): the one benchmark client polls 50
tasks at once.

Usage: `python bench/e2e.py [--runs 50] [--workers 2] [--concurrency 1]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aethera.embedded_redis import EmbeddedRedis, free_port  # noqa: E402


def _square(east_km: float, north_km: float, side_km: float) -> dict[str, Any]:
    from pyproj import Transformer

    from aethera.data.sample import sample_region

    region = sample_region()
    t = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    ring = [list(t.transform(*region.xy(e, n))) for e, n in
            [(east_km, north_km), (east_km + side_km, north_km), (east_km + side_km, north_km + side_km),
             (east_km, north_km + side_km), (east_km, north_km)]]
    return {"type": "Polygon", "coordinates": [ring]}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _drive(base: str, n_runs: int) -> tuple[list[float], float, list[str]]:
    async with aiohttp.ClientSession(base_url=base) as s:
        deadline = time.monotonic() + 60
        while True:
            try:
                async with s.get("/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("API did not come up")
            await asyncio.sleep(0.2)
        async with s.post("/projects", json={"name": "bench", "country": "DEU"}) as r:
            project_id = (await r.json())["id"]

        aois = [_square(-12 + (i % 10) * 2.4, -12 + (i // 10) * 4.0, 0.5) for i in range(n_runs)]

        async def post(aoi: dict[str, Any]) -> tuple[str, datetime]:
            sent = datetime.now(timezone.utc)
            async with s.post(f"/projects/{project_id}/runs",
                              json={"project_type": "solar", "aoi_geojson": aoi}) as r:
                assert r.status == 202, await r.text()
                return (await r.json())["task_id"], sent

        t0 = datetime.now(timezone.utc)
        posted = await asyncio.gather(*(post(a) for a in aois))

        async def finish(task_id: str) -> dict[str, Any]:
            while True:
                async with s.get(f"/tasks/{task_id}") as r:
                    body = await r.json()
                    if r.status != 200:
                        raise SystemExit(f"GET /tasks/{task_id}: {r.status} {body}")
                if body["status"] in ("COMPLETED", "FAILED", "REVOKED"):
                    return body
                await asyncio.sleep(0.5)

        finals = await asyncio.gather(*(finish(t) for t, _ in posted))
    latencies, failures, last = [], [], t0
    for (task_id, sent), body in zip(posted, finals):
        if body["status"] != "COMPLETED":
            failures.append(f"{task_id}: {body['status']} {body.get('error')}")
            continue
        done = datetime.fromisoformat(body["finished_at"])
        latencies.append((done - sent).total_seconds())
        last = max(last, done)
    return latencies, (last - t0).total_seconds(), failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="runs at once per worker process")
    args = parser.parse_args()

    from aethera.data.sample import generate_sample_data

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="aethera-bench-e2e-") as tmp:
        generate_sample_data(Path(tmp) / "sample")
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "STORAGE_BACKEND": "local",
               "STORAGE_BASE_PATH": str(Path(tmp) / "storage"), "AETHERA_HOST": "127.0.0.1",
               "AETHERA_PORT": str(port), "AETHERA_LOG_LEVEL": "WARNING", "AETHERA_RATE_LIMIT_PER_S": "0",
               "AETHERA_DATASETS": str(Path(tmp) / "sample" / "catalog.toml"),
               "AETHERA_WORKER_CONCURRENCY": str(args.concurrency)}
        log = open(Path(tmp) / "services.log", "ab")
        try:
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env, stdout=log, stderr=log))
            for _ in range(args.workers):
                procs.append(subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, stdout=log,
                                              stderr=log))
            latencies, span_s, failures = asyncio.run(_drive(f"http://127.0.0.1:{port}", args.runs))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()
            redis.stop()

    print(f"{args.runs} runs (0.25 km² AOIs, sample region), {args.workers} worker processes x "
          f"concurrency {args.concurrency}")
    if failures:
        print(f"NOT COMPLETED: {len(failures)}")
        for f in failures[:5]:
            print("  " + f)
    if latencies:
        print(f"POST-to-COMPLETED latency: p50 {_percentile(latencies, 0.5):.2f} s, "
              f"p95 {_percentile(latencies, 0.95):.2f} s, mean {statistics.fmean(latencies):.2f} s")
        print(f"throughput: {len(latencies) / span_s * 60:.1f} runs/min ({len(latencies)} runs in {span_s:.1f} s)")


if __name__ == "__main__":
    main()
