"""Peak memory of `GET /batches/{id}/export` at 1,000 and 10,000 sites: is it flat?

Method: each batch is written straight into a local storage directory as COMPLETED runs with small
outputs (tests/batchkit.py: record, AOI, five outputs and the artifact index per site; no computation).
The API (`create_app`, auth off) runs in this process on a loopback test server with an embedded
Redis; after one warm-up export of a 20-site batch (lazy imports, pools), each batch's export is
downloaded whole in 64 KiB reads while tracemalloc records the peak of Python allocations above the
level at the request's start. The smaller batch (--sites' first figure) is the baseline; the script
prints its figure, the larger one's, their difference and ratio, and each export's wall and CPU seconds.

Bias, stated: tracemalloc counts Python allocations only: SQLite's own page cache (capped at 2 MiB by
the plan) and the interpreter's free lists are not in it, and it slows allocation-heavy code ~3x, so
its CPU seconds are not the export's speed. The client's reads happen in the same process and count
(one 64 KiB chunk at a time). Storage is the page cache (files just written). Flat means the larger
batch's peak is within a few MiB of the baseline's.

Run: `.venv/bin/python bench/batch_export.py [--sites 1000,10000]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import batchkit  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from aethera.api.app import create_app  # noqa: E402
from aethera.embedded_redis import EmbeddedRedis  # noqa: E402
from aethera.settings import load_settings  # noqa: E402

MIB = 1024 * 1024


async def _export(client: TestClient, batch_id: str) -> tuple[int, int, float, float]:
    """(archive bytes, tracemalloc peak above the start, wall s, CPU s) of one whole download."""
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    resp = await client.get(f"/batches/{batch_id}/export")
    assert resp.status == 200, resp.status
    length = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        length += len(chunk)
    assert length == int(resp.headers["Content-Length"])
    return length, tracemalloc.get_traced_memory()[1] - start, time.perf_counter() - t0, time.process_time() - c0


async def run(sizes: list[int]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="aethera-bench-batch-export-"))
    redis = EmbeddedRedis(tmp / "redis")
    try:
        url = redis.start()
        (tmp / "catalog.toml").write_text("")
        t0 = time.perf_counter()
        warm = batchkit.write_stored_batch(tmp / "storage", 20)
        batches = [batchkit.write_stored_batch(tmp / "storage", n, seed=n) for n in sizes]
        print(f"{sum(sizes):,} sites written in {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()}")
        settings = load_settings(
            {
                "REDIS_URL": url,
                "STORAGE_BACKEND": "local",
                "STORAGE_BASE_PATH": str(tmp / "storage"),
                "AETHERA_DATASETS": str(tmp / "catalog.toml"),
                "AETHERA_LOG_LEVEL": "ERROR",
                "AETHERA_RATE_LIMIT_PER_S": "0",
                "AETHERA_AUTH": "off",
                "AETHERA_BACKEND_DEADLINE_S": "60",
            }
        )
        async with TestClient(TestServer(create_app(settings))) as client:
            tracemalloc.start()
            await _export(client, warm)
            figures = []
            for n, batch_id in zip(sizes, batches, strict=True):
                size, peak, wall, cpu = await _export(client, batch_id)
                figures.append(peak)
                print(
                    f"  {n:>6,} sites: archive {size / MIB:.1f} MiB, export peak {peak / MIB:.2f} MiB "
                    f"(tracemalloc), {wall:.1f} s wall, {cpu:.1f} s CPU; load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            tracemalloc.stop()
        base, top = figures[0], figures[-1]
        print(
            f"baseline ({sizes[0]:,} sites) {base / MIB:.2f} MiB; {sizes[-1]:,} sites {top / MIB:.2f} MiB: "
            f"+{(top - base) / MIB:.2f} MiB, ratio {top / base:.2f} "
            f"({(top - base) / max(1, sizes[-1] - sizes[0]):.0f} bytes per extra site)"
        )
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", default="1000,10000", help="comma-separated batch sizes, baseline first")
    args = parser.parse_args()
    asyncio.run(run([int(n) for n in args.sites.split(",")]))


if __name__ == "__main__":
    main()
