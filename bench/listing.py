"""`GET /runs` pages from the per-tenant index against the old full scan, with 100,000 runs in storage.

Method: --runs run records (`runs/{id}/run.json`) and their markers in the tenant's index
(`index/tenant-runs/{tenant}/{inverted ms}-{id}`, one run per millisecond) are written straight into
storage: into a local root with plain file writes, and into moto's S3 server (a `moto_server` process
on a free loopback port) through the S3 API, 64 PUTs at a time. Writing is set-up, not measured. Then
a first page (no cursor) and a deep page (the cursor of the run at --deep, so the page is runs
--deep+1 to --deep+limit) are listed --repeat times each, through the code `GET /runs` runs
(`jobs.listings.list_runs`) and through the old one (`list_runs` as it was before the index could be
read from a cursor: one `Storage.list` of the whole prefix, skipping names up to the cursor), on the
same storage in the same run. Reported: the median and best time, the Storage calls, and what they
cost underneath: S3 requests by operation (counted by a botocore event hook on the real client), and
on disk the keys the listing walked.

Bias, stated: moto keeps the bucket in memory and sorts it per LIST, so its LIST time grows with the
bucket where real S3's does not; the request counts carry over, the times do not. Local reads come from
the page cache. The machine is shared: compare ratios, not absolute times.

Run: `.venv/bin/python bench/listing.py [--runs 100000] [--s3-runs 100000] [--limit 200] [--repeat 5]`
(`--s3-runs 0` skips S3).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from aethera import keyspace as keys
from aethera.embedded_redis import free_port
from aethera.jobs import listings
from aethera.models import RunRecord, RunStatus
from aethera.storage.base import Storage
from aethera.storage.local import LocalStorage
from aethera.storage.s3 import S3Storage

TENANT = "acme"
T0_MS = 1_780_000_000_000
ListFn = Callable[[Storage, str | None], Awaitable[tuple[list[RunRecord], str | None]]]


class CountingStorage:
    """The real adapter with its calls counted by method (and, for `list`, the keys it yielded)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "list":
            def listed(*args: Any, **kwargs: Any) -> Any:
                self.calls["list"] += 1

                async def walk() -> Any:
                    async for stat in attr(*args, **kwargs):
                        self.calls["keys walked"] += 1
                        yield stat

                return walk()

            return listed
        if name == "list_page":
            async def paged(*args: Any, **kwargs: Any) -> Any:
                self.calls["list_page"] += 1
                out = await attr(*args, **kwargs)
                self.calls["keys walked"] += len(out)
                return out

            return paged
        if callable(attr):
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


async def old_list_runs(storage: Storage, *, limit: int, cursor: str | None) -> tuple[list[RunRecord], str | None]:
    """`records.list_runs` before this change (the tenant's index, walked from its start every page)."""
    prefix = keys.tenant_runs_index(TENANT)
    names: list[str] = []
    async for stat in storage.list(prefix):
        name = stat.key[len(prefix):]
        if not keys.RUN_INDEX_NAME_RE.match(name) or (cursor is not None and name <= cursor):
            continue
        names.append(name)
        if len(names) > limit:
            break
    more = len(names) > limit
    names = names[:limit]
    raws = await listings.read_all(storage, [keys.run_record_key(n[14:]) for n in names])
    runs = [msgspec.json.decode(raw, type=RunRecord) for raw in raws if raw is not None]
    return runs, (names[-1] if more and names else None)


def record(run_id: str) -> bytes:
    now = "2026-05-28T00:00:00.000+00:00"
    run = RunRecord(run_id=run_id, task_id=run_id, project_id="0" * 32, project_type="solar", params={},
                    config={}, aoi_source="geojson", aoi_path=None, created_at=now, updated_at=now,
                    status=RunStatus.COMPLETED, attempts=1, job_id=f"{run_id}:1", tenant=TENANT)
    return msgspec.json.encode(run)


def plan(n: int) -> list[tuple[str, str]]:
    """(run id, index name) newest first, one run per millisecond."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    return sorted(((i, keys.run_index_name(T0_MS + k, i)) for k, i in enumerate(ids)), key=lambda p: p[1])


def write_local(root: Path, runs: list[tuple[str, str]]) -> None:
    index = root / keys.tenant_runs_index(TENANT)
    index.mkdir(parents=True)
    for run_id, name in runs:
        (index / name).write_bytes(b"")
        folder = root / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "run.json").write_bytes(record(run_id))
    # the index exists from the start here: nothing to migrate
    (root / keys.LISTINGS_MIGRATED).parent.mkdir(parents=True)
    (root / keys.LISTINGS_MIGRATED).write_bytes(b"{}")


async def write_s3(storage: S3Storage, runs: list[tuple[str, str]]) -> None:
    gate = asyncio.Semaphore(64)

    async def put(key: str, data: bytes) -> None:
        async with gate:
            await storage.save(key, data)

    prefix = keys.tenant_runs_index(TENANT)
    jobs = [put(prefix + name, b"") for _, name in runs] + [put(keys.run_record_key(i), record(i)) for i, _ in runs]
    for start in range(0, len(jobs), 5000):  # not 200,000 coroutines at once
        await asyncio.gather(*jobs[start:start + 5000])
    await storage.save(keys.LISTINGS_MIGRATED, b"{}")


async def measure(storage: Storage, s3_requests: Counter[str] | None, runs: list[tuple[str, str]],
                  limit: int, deep: int, repeat: int) -> list[dict[str, Any]]:
    counting = CountingStorage(storage)

    async def new(cursor: str | None) -> tuple[list[RunRecord], str | None]:
        return await listings.list_runs(counting, tenant=TENANT, project_id=None, limit=limit, cursor=cursor)

    async def old(cursor: str | None) -> tuple[list[RunRecord], str | None]:
        return await old_list_runs(counting, limit=limit, cursor=cursor)

    await listings.ensure_migrated(counting)  # finds the done marker: one `exists`, outside the timing
    rows = []
    for page, cursor, expect in (("first", None, runs[:limit]), (f"deep (after {deep:,})", runs[deep - 1][1],
                                                                    runs[deep:deep + limit])):
        for how, fn in (("index page (new)", new), ("full scan (old)", old)):
            times = []
            for _ in range(repeat):
                counting.calls.clear()
                if s3_requests is not None:
                    s3_requests.clear()
                started = time.perf_counter()
                got, _ = await fn(cursor)
                times.append(time.perf_counter() - started)
                assert [r.run_id for r in got] == [i for i, _ in expect], (how, page)
            rows.append({"page": page, "how": how, "median_s": statistics.median(times), "best_s": min(times),
                         "calls": dict(counting.calls),
                         "s3_requests": dict(s3_requests) if s3_requests is not None else None})
    return rows


def report(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'page':22} {'listing':18} {'median':>9} {'best':>9}  storage calls; underneath")
    for r in rows:
        calls = ", ".join(f"{k} {v:,}" for k, v in sorted(r["calls"].items()))
        under = ", ".join(f"{k} {v:,}" for k, v in sorted((r["s3_requests"] or {}).items()))
        print(f"{r['page']:22} {r['how']:18} {r['median_s'] * 1000:8.1f}ms {r['best_s'] * 1000:8.1f}ms  "
              f"{calls}{'; S3 ' + under if under else ''}")
    for page in dict.fromkeys(r["page"] for r in rows):
        new, old = (next(r for r in rows if r["page"] == page and r["how"].startswith(h)) for h in ("index", "full"))
        print(f"  {page}: full scan / index page = {old['median_s'] / new['median_s']:.1f}x")


async def bench_local(n: int, limit: int, deep: int, repeat: int) -> None:
    runs = plan(n)
    with tempfile.TemporaryDirectory(prefix="aethera-listing-") as tmp:
        root = Path(tmp) / "root"
        started = time.perf_counter()
        await asyncio.to_thread(write_local, root, runs)
        print(f"local: wrote {n:,} runs (record + index marker) in {time.perf_counter() - started:.1f} s")
        storage = await LocalStorage(root).open()
        try:
            report(f"local storage, {n:,} runs of one tenant, limit {limit}",
                   await measure(storage, None, runs, limit, deep, repeat))
        finally:
            await storage.close()


async def bench_s3(n: int, limit: int, deep: int, repeat: int) -> None:
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if moto is None:
        print("s3: moto_server not found; skipped")
        return
    port = free_port()
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    storage = S3Storage(bucket="listing-bench", endpoint_url=endpoint, access_key_id="testing",
                        secret_access_key="testing", region="us-east-1")
    try:
        await storage.open()
        client = storage._need()
        for _ in range(200):  # the server answers within seconds of its start
            try:
                await client.create_bucket(Bucket="listing-bench")
                break
            except Exception:
                await asyncio.sleep(0.05)
        requests: Counter[str] = Counter()
        client.meta.events.register("before-call.s3", lambda model, **_: requests.update([model.name]))
        runs = plan(n)
        started = time.perf_counter()
        await write_s3(storage, runs)
        print(f"\ns3 (moto_server): wrote {n:,} runs (record + index marker) in "
              f"{time.perf_counter() - started:.1f} s")
        report(f"S3 (moto_server), {n:,} runs of one tenant, limit {limit}",
               await measure(storage, requests, runs, limit, deep, repeat))
    finally:
        await storage.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100_000, help="runs in local storage")
    ap.add_argument("--s3-runs", type=int, default=100_000, help="runs in moto S3 (0: skip S3)")
    ap.add_argument("--limit", type=int, default=200, help="page size (GET /runs's default)")
    ap.add_argument("--deep", type=float, default=0.99, help="where the deep page starts, as a share of the runs")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if args.runs:
        asyncio.run(bench_local(args.runs, args.limit, int(args.runs * args.deep), args.repeat))
    if args.s3_runs:
        asyncio.run(bench_s3(args.s3_runs, args.limit, int(args.s3_runs * args.deep), args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
