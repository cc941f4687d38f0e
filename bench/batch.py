"""Benchmark: a batch of sites end to end, the same batch again (every site reused), and repeated
single requests that complete at once by result reuse.

Method: an embedded Redis, the sample region as the dataset catalog, local storage in a temp dir, the
API (`server.py`) and 2 `worker.py` processes (default concurrency), all on 127.0.0.1.
1. baseline: `POST /projects/{id}/batches` with --sites (default 1,000) distinct 0.3 km x 0.3 km sites
   on a grid over the sample region; `GET /batches/{id}` polled every 0.5 s until done. Reported: the
   POST's own time (every site validated, keyed and stored), the time to the first summary row of a
   completed site, the time until every site is final (sites/min), and the peak resident memory
   (VmHWM) of the API and of each worker process (its pipeline children are not included).
2. the same FeatureCollection again: every site completes at once from the runs of step 1.
3. --repeat single `POST .../runs` of one site already computed: each answer is COMPLETED, so the POST
   round trip is the POST -> COMPLETED latency (p50, p95). Compared with one fresh computation of a
   single site (config.reuse: false), POSTed and polled to COMPLETED.

Bias, stated: client, API, workers and Redis share the machine's cores, and the first run of each
worker pays the import of the geospatial stack. Compare the ratios, not the absolute figures.

Usage: `python bench/batch.py [--sites 1000] [--repeat 50] [--workers 2]`
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
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aethera.embedded_redis import EmbeddedRedis, free_port  # noqa: E402


def _squares(n: int, side_km: float = 0.3) -> list[dict[str, Any]]:
    """`n` (at most 1,024) distinct squares on a 32 x 32 grid, 0.75 km apart, inside the sample region."""
    from pyproj import Transformer

    from aethera.data.sample import sample_region

    region = sample_region()
    t = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)
    out = []
    for i in range(n):
        e, nk = -12 + (i % 32) * 0.75, -12 + (i // 32) * 0.75
        ring = [list(t.transform(*region.xy(x, y))) for x, y in
                [(e, nk), (e + side_km, nk), (e + side_km, nk + side_km), (e, nk + side_km), (e, nk)]]
        out.append({"type": "Feature", "properties": {"name": f"site {i}"},
                    "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _wait_up(s: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            async with s.get("/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("API did not come up")
        await asyncio.sleep(0.2)


async def _batch(s: aiohttp.ClientSession, project_id: str, features: list[dict[str, Any]]) -> tuple[float, float, dict[str, Any]]:
    t0 = time.perf_counter()
    async with s.post(f"/projects/{project_id}/batches", json={
            "project_type": "solar", "features": {"type": "FeatureCollection", "features": features}}) as r:
        body = await r.json()
        assert r.status == 202, body
    posted = time.perf_counter() - t0
    first_row_s = None
    while True:
        async with s.get(f"/batches/{body['batch_id']}") as r:
            status = await r.json()
        if first_row_s is None and status["counts"]["COMPLETED"] > 0:
            first_row_s = time.perf_counter() - t0
        if status["done"]:
            return posted, time.perf_counter() - t0, {**status, "first_row_s": first_row_s}
        await asyncio.sleep(0.5)


def _peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process (Linux), or None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _print_failed(s: aiohttp.ClientSession, batch_id: str) -> None:
    """Every site that did not complete, with its run's error code and detail (the bench's temp dir,
    logs included, is removed at the end, so this is where the reasons are kept)."""
    async with s.get(f"/batches/{batch_id}/summary") as r:
        rows = (await r.json())["rows"]
    failed = [row for row in rows if row["status"] != "COMPLETED"]
    print(f"   sites not COMPLETED: {len(failed)}")
    for row in failed:
        code = None
        if row.get("run_id"):
            async with s.get(f"/runs/{row['run_id']}") as r:
                code = (await r.json()).get("error_code") if r.status == 200 else f"HTTP {r.status}"
        print(f"   - site {row['index']} {row['name']!r} run {row.get('run_id')}: {row['status']} "
              f"code={code} detail={row.get('error')!r}")


async def _drive(base: str, n_sites: int, repeat: int, pids: dict[str, int]) -> None:
    async with aiohttp.ClientSession(base_url=base) as s:
        await _wait_up(s)
        async with s.post("/projects", json={"name": "bench", "country": "DEU"}) as r:
            project_id = (await r.json())["id"]
        features = _squares(n_sites)

        post_s, total_s, status = await _batch(s, project_id, features)
        print(f"1. batch of {n_sites} sites: POST {post_s * 1000:.0f} ms, first summary row after "
              f"{status['first_row_s']:.1f} s, all final after {total_s:.1f} s "
              f"({n_sites / total_s * 60:.1f} sites/min); counts {status['counts']}")
        await _print_failed(s, status["batch_id"])
        peaks = {name: _peak_rss_mib(pid) for name, pid in pids.items()}
        print("   peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items() if v is not None))
        post2_s, total2_s, status2 = await _batch(s, project_id, features)
        print(f"2. the same batch again: POST {post2_s * 1000:.0f} ms, all final after {total2_s:.2f} s; "
              f"counts {status2['counts']}  (ratio to 1: {total2_s / total_s:.4f})")

        body = {"project_type": "solar", "aoi_geojson": features[0]["geometry"]}
        t0 = time.perf_counter()
        async with s.post(f"/projects/{project_id}/runs", json={**body, "config": {"reuse": False}}) as r:
            fresh = await r.json()
        while True:
            async with s.get(f"/tasks/{fresh['task_id']}") as r:
                task = await r.json()
            if task["status"] in ("COMPLETED", "FAILED", "REVOKED"):
                break
            await asyncio.sleep(0.05)
        fresh_s = time.perf_counter() - t0

        latencies = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            async with s.post(f"/projects/{project_id}/runs", json=body) as r:
                answer = await r.json()
            latencies.append(time.perf_counter() - t0)
            assert answer["status"] == "COMPLETED", answer
        p50 = _percentile(latencies, 0.5)
        print(f"3. repeated request, POST -> COMPLETED: p50 {p50 * 1000:.0f} ms, "
              f"p95 {_percentile(latencies, 0.95) * 1000:.0f} ms, mean {statistics.fmean(latencies) * 1000:.0f} ms "
              f"over {repeat}; a fresh computation of the same site: {fresh_s:.2f} s "
              f"(ratio {p50 / fresh_s:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from aethera.data.sample import generate_sample_data

    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="aethera-bench-batch-") as tmp:
        generate_sample_data(Path(tmp) / "sample")
        redis = EmbeddedRedis(Path(tmp) / "redis")
        redis.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "STORAGE_BACKEND": "local",
               "STORAGE_BASE_PATH": str(Path(tmp) / "storage"), "AETHERA_HOST": "127.0.0.1",
               "AETHERA_PORT": str(port), "AETHERA_LOG_LEVEL": "WARNING", "AETHERA_RATE_LIMIT_PER_S": "0",
               "AETHERA_DATASETS": str(Path(tmp) / "sample" / "catalog.toml")}
        log = open(Path(tmp) / "services.log", "ab")
        try:
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "server.py")], env=env, stdout=log, stderr=log))
            for _ in range(args.workers):
                procs.append(subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, stdout=log,
                                              stderr=log))
            pids = {"api": procs[0].pid, **{f"worker{i}": p.pid for i, p in enumerate(procs[1:])}}
            asyncio.run(_drive(f"http://127.0.0.1:{port}", args.sites, args.repeat, pids))
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


if __name__ == "__main__":
    main()
