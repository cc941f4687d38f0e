"""Local storage adapter against a plain synchronous file copy of the same bytes, in the same run.

Method: one random buffer of --size-mib MiB is written and read back in --chunk-mib chunks, (a) with
plain blocking file calls and (b) through `LocalStorage` (aiofiles on its own thread pool: save from
an async stream, read through `stream()`). Both sides do the same durable write (temp file, fsync,
rename, directory fsync), so the ratio is the price of the async adapter. Runs alternate which side
goes first; after one untimed warm-up round, the median and the best of --repeat runs are reported
(writes vary a lot from run to run with the kernel's writeback and the other work on the machine).

Bias, stated: reads come from the page cache on both sides (this script does not drop caches on a
shared machine), so read figures measure the per-chunk cost, not the disk. Other processes share the
CPUs; compare the ratio, not the absolute figures, across machines.

Run: `.venv/bin/python bench/storage.py [--size-mib 256] [--chunk-mib 1] [--repeat 5]`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aethera.storage.local import LocalStorage

MIB = 1024 * 1024


def sync_write(path: Path, data: memoryview, chunk: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for i in range(0, len(data), chunk):
            f.write(data[i : i + chunk])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_read(path: Path, chunk: int) -> int:
    total = 0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(chunk):
            total += len(block)
    return total


async def chunks_of(data: memoryview, chunk: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]  # type: ignore[misc]  # memoryview is what a stream may hand over


async def storage_read(storage: LocalStorage, key: str, chunk: int) -> int:
    total = 0
    async for block in storage.stream(key, chunk_size=chunk):
        total += len(block)
    return total


async def measure(size_mib: int, chunk_mib: float, repeat: int) -> dict[str, list[float]]:
    chunk = int(chunk_mib * MIB)
    data = memoryview(os.urandom(size_mib * MIB))
    expected = hashlib.sha256(data).hexdigest()
    times: dict[str, list[float]] = {k: [] for k in ("sync_write", "sync_read", "async_write", "async_read")}
    with tempfile.TemporaryDirectory(prefix="aethera-bench-") as tmp:
        plain = Path(tmp) / "plain" / "object.bin"
        plain.parent.mkdir()
        storage = await LocalStorage(Path(tmp) / "storage").open()
        try:

            async def run_sync() -> None:
                t0 = time.perf_counter()
                sync_write(plain, data, chunk)
                t1 = time.perf_counter()
                assert sync_read(plain, chunk) == len(data)
                t2 = time.perf_counter()
                times["sync_write"].append(t1 - t0)
                times["sync_read"].append(t2 - t1)

            async def run_async() -> None:
                t0 = time.perf_counter()
                await storage.save("bench/object.bin", chunks_of(data, chunk))
                t1 = time.perf_counter()
                assert await storage_read(storage, "bench/object.bin", chunk) == len(data)
                t2 = time.perf_counter()
                times["async_write"].append(t1 - t0)
                times["async_read"].append(t2 - t1)

            # one untimed round first: the first writes of a run pay for page-cache allocation
            for i in range(repeat + 1):
                first, second = (run_sync, run_async) if i % 2 == 0 else (run_async, run_sync)
                await first()
                await second()
            for series in times.values():
                del series[0]

            # both sides stored the same bytes (checked outside the timed part)
            stored = Path(tmp) / "storage" / "bench" / "object.bin"
            for path in (plain, stored):
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    while block := f.read(4 * MIB):
                        digest.update(block)
                if digest.hexdigest() != expected:
                    raise SystemExit(f"bench: {path.parent.name} holds different bytes than were written")
        finally:
            await storage.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=256, help="object size (default 256)")
    parser.add_argument("--chunk-mib", type=float, default=1.0, help="chunk size (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per side (default 5)")
    args = parser.parse_args(argv)
    if args.size_mib <= 0 or args.chunk_mib <= 0 or args.repeat <= 0:
        parser.error("sizes and --repeat must be positive")

    times = asyncio.run(measure(args.size_mib, args.chunk_mib, args.repeat))

    def rates(name: str) -> tuple[float, float]:
        return args.size_mib / statistics.median(times[name]), args.size_mib / min(times[name])

    print(
        f"storage bench: {args.size_mib} MiB object, {args.chunk_mib:g} MiB chunks, {args.repeat} runs "
        "per side (reads served from the page cache)"
    )
    print(f"{'MiB/s':8}{'sync median':>13}{'best':>8}{'LocalStorage median':>21}{'best':>8}{'ratio':>8}")
    for op in ("write", "read"):
        (sync_med, sync_best), (async_med, async_best) = rates(f"sync_{op}"), rates(f"async_{op}")
        print(
            f"{op:8}{sync_med:13.0f}{sync_best:8.0f}{async_med:21.0f}{async_best:8.0f}"
            f"{async_med / sync_med:8.2f}"
        )
    print("ratio = LocalStorage median / sync median (1.00 = no cost for going async)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
