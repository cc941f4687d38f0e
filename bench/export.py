"""The streaming export against serving a pre-built ZIP and against building the ZIP first, in one run.

Method: a COMPLETED run is written into a local storage directory (run record, AOI, results, legal,
log, report through `save_artifact`, plus --layers GeoJSON-like layers totalling --size-mib MiB).
Three variants serve the same members as a stored (uncompressed) ZIP, each from a server process of
its own on loopback:
  (a) export   GET /runs/{id}/export: this service's route (behind the auth middleware, auth off),
               streamed from storage as it is read;
  (b) file     web.FileResponse of a ZIP of the same members built before the timing (sendfile);
  (c) build    per request, build the ZIP into a temporary file (zipfile, in a thread), then send it
               with web.FileResponse: the build-then-send approach the export replaces.
For each variant the client downloads the archive --repeat times, one at a time, and then
--concurrency downloads at once; it reports time to the first body byte, throughput, and the server's
peak resident memory during the downloads (VmHWM, reset through /proc/PID/clear_refs before each
measurement; sampled RSS where that is not allowed), as the absolute peak and above the idle server.
(a) is also run on a run a quarter the size, to show its memory does not grow with the run.

Bias, stated: members come from the page cache (just written; caches are not dropped on a shared
machine), so this measures the serving path, not the disk. Client and server share 2 CPUs, so
throughput is what one machine does end to end, not the server alone. (c) stores rather than deflates,
the cheapest build it could do; a deflating build takes several times longer. Compare ratios, not
absolute figures, across machines.

Run: `.venv/bin/python bench/export.py [--size-mib 1024] [--layers 8] [--repeat 3] [--concurrency 4]`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

MIB = 1024 * 1024
VARIANTS = ("export", "file", "build")
DESCRIPTION = {
    "export": "(a) streaming export",
    "file": "(b) FileResponse, pre-built ZIP",
    "build": "(c) build temp ZIP, then send",
}
FINISHED_AT = "2025-03-14T09:26:53.000+00:00"


# --- the run ------------------------------------------------------------------------------------


def _json_block(seed: int, size: int) -> bytes:
    """GeoJSON-looking bytes: features with random polygons (content is irrelevant to a stored ZIP)."""
    rng = random.Random(seed)
    parts, total = [], 0
    while total < size:
        lon, lat = rng.uniform(-10, 30), rng.uniform(35, 60)
        ring = ",".join(f"[{lon + rng.random() / 100:.6f},{lat + rng.random() / 100:.6f}]" for _ in range(16))
        feature = f'{{"type":"Feature","properties":{{"id":{rng.randrange(1 << 30)}}},' \
                  f'"geometry":{{"type":"Polygon","coordinates":[[{ring}]]}}}},'
        parts.append(feature)
        total += len(feature)
    return "".join(parts).encode()[:size]


async def write_run(root: Path, size_mib: int, layers: int) -> str:
    """A COMPLETED run in local storage at `root`; returns its id."""
    from aethera.report import REPORT_MEDIA_TYPE
    from aethera.storage.artifacts import artifact_key, save_artifact
    from aethera.storage.local import LocalStorage

    storage = await LocalStorage(root).open()
    run_id = uuid.uuid4().hex
    record = {
        "run_id": run_id, "task_id": uuid.uuid4().hex, "project_id": uuid.uuid4().hex, "project_type": "solar",
        "params": {"project_type": "solar", "country": "DEU", "capacity_mw": 50.0, "buffer_km": 5.0},
        "config": {}, "aoi_source": "geojson", "created_at": FINISHED_AT, "updated_at": FINISHED_AT,
        "status": "COMPLETED", "attempts": 1, "finished_at": FINISHED_AT,
    }
    # bench data: a small hand-made results document, not pipeline output
    results = {"run_id": run_id, "aoi": {"aoi_area_ha": 100.0}, "datasets": {"bench": "synthetic"},
               "step_durations_s": {}, "warnings": ["synthetic benchmark run"]}
    aoi = b'{"type":"Polygon","coordinates":[[[13.0,52.0],[13.01,52.0],[13.01,52.01],[13.0,52.0]]]}'
    try:
        await storage.save(artifact_key(run_id, "aoi.geojson"), aoi)
        per_layer = size_mib * MIB // layers
        block = _json_block(1, min(per_layer, 8 * MIB))
        for i in range(layers):
            head = f'{{"type":"FeatureCollection","name":"layer{i}","features":['.encode()
            body = (block * (per_layer // len(block) + 1))[: per_layer - len(head) - 2]
            await save_artifact(storage, run_id, f"layers/layer{i:02d}.geojson", head + body + b"]}",
                                "application/geo+json")
        await save_artifact(storage, run_id, "results.json", msgspec.json.encode(results), "application/json")
        await save_artifact(storage, run_id, "legal.json", b'{"overall_compliant":true,"statuses":[]}',
                            "application/json")
        await save_artifact(storage, run_id, "run.log", b"bench run\n" * 100, "text/plain")
        # the report is rendered from typed pipeline Results, which this hand-made document is not;
        # the bench measures the export's streaming, so a small stand-in page will do
        report = b"<!DOCTYPE html><html><body><p>bench run (synthetic)</p></body></html>"
        await save_artifact(storage, run_id, "report.html", report, REPORT_MEDIA_TYPE)
        await storage.save(artifact_key(run_id, "run.json"), msgspec.json.encode(record))
    finally:
        await storage.close()
    return run_id


def member_files(root: Path, run_id: str) -> list[tuple[str, Path]]:
    """(archive name, file) of every member but the manifest, in the export's order."""
    from aethera.export import _member_order  # the same order, so (b) and (c) hold the same layout

    run_dir = root / "runs" / run_id
    index = msgspec.json.decode((run_dir / "artifacts.json").read_bytes())
    names = [a["name"] for a in index["artifacts"]] + ["aoi.geojson"]
    return [(n, run_dir / n) for n in sorted(names, key=_member_order)]


def build_zip(members: list[tuple[str, Path]], out: Path) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, path in members:
            archive.write(path, name)


# --- the servers (each variant in a process of its own) ------------------------------------------


def serve(variant: str, root: Path, run_id: str, prebuilt: Path | None) -> None:
    from aiohttp import web

    app = web.Application()
    if variant == "export":
        from aethera.api.keys import STORAGE
        from aethera.api.routes.export import add_routes
        from aethera.security.auth import make_auth_middleware
        from aethera.settings import load_settings
        from aethera.storage.local import LocalStorage

        # the route reads the caller's tenant; with auth off every request is the default tenant
        app = web.Application(middlewares=[make_auth_middleware(load_settings({"AETHERA_AUTH": "off"}))])

        async def storage_ctx(app: web.Application) -> Any:
            app[STORAGE] = await LocalStorage(root).open()
            yield
            await app[STORAGE].close()

        app.cleanup_ctx.append(storage_ctx)
        add_routes(app)
    elif variant == "file":
        assert prebuilt is not None

        async def send_prebuilt(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(prebuilt, headers={"Content-Type": "application/zip"})

        app.router.add_get("/runs/{run_id}/export", send_prebuilt)
    else:
        members = member_files(root, run_id)
        scratch = root.parent / "build-scratch"
        scratch.mkdir(exist_ok=True)

        built: list[Path] = []

        def remove_built() -> None:
            while built:
                built.pop().unlink(missing_ok=True)

        async def build_then_send(request: web.Request) -> web.StreamResponse:
            # FileResponse sends after the handler returns, so the previous temp file goes now
            remove_built()
            out = scratch / f"{uuid.uuid4().hex}.zip"
            built.append(out)
            await asyncio.to_thread(build_zip, members, out)
            return web.FileResponse(out, headers={"Content-Type": "application/zip"})

        async def cleanup(app: web.Application) -> None:
            remove_built()

        app.on_cleanup.append(cleanup)
        app.router.add_get("/runs/{run_id}/export", build_then_send)

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"READY {runner.addresses[0][1]}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(start())


# --- the client -----------------------------------------------------------------------------------


class Memory:
    """Peak RSS of a process over an interval: VmHWM after a reset, or sampled RSS as a fallback."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.exact = False

    def _status(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} missing")

    def rss(self) -> int:
        return self._status("VmRSS")

    def __enter__(self) -> Memory:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.exact = True
        except OSError:
            self.exact = False
        self._samples = [self.rss()]
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self._samples.append(self.rss())
            except (OSError, RuntimeError):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self._samples)
        if self.exact:
            self.peak = max(self.peak, self._status("VmHWM"))


@dataclass
class Result:
    variant: str
    size: int
    ttfb_s: list[float]
    seconds: list[float]
    concurrent_s: float
    idle_rss: int
    peak_rss: int
    concurrent_peak_rss: int


async def fetch(session: Any, url: str) -> tuple[float, float, int, int]:
    """(time to first body byte, total time, bytes, Content-Length) of one download."""
    t0 = time.perf_counter()
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        first = await resp.content.readany()
        ttfb = time.perf_counter() - t0
        got = len(first)
        while chunk := await resp.content.readany():
            got += len(chunk)
        return ttfb, time.perf_counter() - t0, got, int(resp.headers["Content-Length"])


def start_server(variant: str, root: Path, run_id: str, prebuilt: Path | None) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, __file__, "--serve", variant, "--root", str(root), "--run-id", run_id]
    if prebuilt:
        cmd += ["--prebuilt", str(prebuilt)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"{variant} server did not start: {line!r}")
    return proc, int(line.split()[1])


async def measure(variant: str, root: Path, run_id: str, prebuilt: Path | None, repeat: int,
                  concurrency: int) -> Result:
    import aiohttp

    proc, port = start_server(variant, root, run_id, prebuilt)
    url = f"http://127.0.0.1:{port}/runs/{run_id}/export"
    memory = Memory(proc.pid)
    try:
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # one small request first, so the idle figure includes the first request's imports
            async with session.head(url) as resp:
                await resp.read()
            await asyncio.sleep(0.2)
            idle = memory.rss()
            ttfbs, secs = [], []
            with memory:
                for _ in range(repeat):
                    ttfb, total, got, length = await fetch(session, url)
                    assert got == length, (variant, got, length)
                    ttfbs.append(ttfb)
                    secs.append(total)
            peak = memory.peak
            conc_s, conc_peak = float("nan"), 0
            if concurrency > 1:
                with memory:
                    t0 = time.perf_counter()
                    done = await asyncio.gather(*(fetch(session, url) for _ in range(concurrency)))
                    conc_s = time.perf_counter() - t0
                assert all(g == n for _, _, g, n in done)
                conc_peak = memory.peak
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return Result(variant, length, ttfbs, secs, conc_s, idle, peak, conc_peak)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def report(results: list[Result], concurrency: int) -> None:
    base = {r.variant: r for r in results}
    print()
    print(f"{'variant':34} {'first byte':>12} {'throughput':>12} {'peak RSS':>10} {'above idle':>11}"
          f"   {concurrency}x at once: {'MiB/s':>7} {'peak RSS':>9}")
    for r in results:
        mibps = r.size / MIB / statistics.median(r.seconds)
        conc = concurrency * r.size / MIB / r.concurrent_s if concurrency > 1 else float("nan")
        print(f"{DESCRIPTION[r.variant]:34} {fmt_ms(statistics.median(r.ttfb_s)):>12} {mibps:8.0f} MiB/s"
              f" {r.peak_rss / MIB:6.0f} MiB {(r.peak_rss - r.idle_rss) / MIB:7.0f} MiB"
              f"   {'':14}{conc:7.0f} {r.concurrent_peak_rss / MIB:5.0f} MiB")
    a, b, c = base["export"], base["file"], base["build"]

    def tp(r: Result) -> float:
        return r.size / statistics.median(r.seconds)

    print()
    print("ratios (medians):")
    print(f"  first byte      (a)/(b) = {statistics.median(a.ttfb_s) / statistics.median(b.ttfb_s):7.2f}"
          f"   (c)/(a) = {statistics.median(c.ttfb_s) / statistics.median(a.ttfb_s):9.1f}")
    print(f"  throughput      (a)/(b) = {tp(a) / tp(b):7.2f}   (a)/(c) = {tp(a) / tp(c):9.2f}")
    print(f"  peak RSS above idle, (a) - (b) = {(a.peak_rss - a.idle_rss - b.peak_rss + b.idle_rss) / MIB:+.0f} MiB;"
          f" {concurrency} at once: (a) {(a.concurrent_peak_rss - a.idle_rss) / MIB:.0f} MiB,"
          f" (b) {(b.concurrent_peak_rss - b.idle_rss) / MIB:.0f} MiB above idle")


async def run_bench(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="aethera-bench-export-"))
    try:
        t0 = time.perf_counter()
        root = tmp / "storage"
        small_id = await write_run(root, max(1, args.size_mib // 4), args.layers)
        run_id = await write_run(root, args.size_mib, args.layers)
        prebuilt = tmp / "prebuilt.zip"
        build_zip(member_files(root, run_id), prebuilt)
        print(f"run of {args.size_mib} MiB in {args.layers} layers written and pre-built in "
              f"{time.perf_counter() - t0:.1f} s (temp dir {tmp})")
        results = []
        for variant in VARIANTS:
            r = await measure(variant, root, run_id, prebuilt if variant == "file" else None, args.repeat,
                              args.concurrency if variant != "build" else 1)
            results.append(r)
            print(f"  {DESCRIPTION[r.variant]}: {r.size / MIB:.0f} MiB, median {statistics.median(r.seconds):.2f} s",
                  flush=True)
        small = await measure("export", root, small_id, None, args.repeat, 1)
        report(results, args.concurrency)
        a = results[0]
        print(f"  (a) memory as the run grows: {small.size / MIB:.0f} MiB run -> "
              f"{(small.peak_rss - small.idle_rss) / MIB:.1f} MiB above idle; {a.size / MIB:.0f} MiB run -> "
              f"{(a.peak_rss - a.idle_rss) / MIB:.1f} MiB above idle")
        print(f"total {time.perf_counter() - t0:.0f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total size of the run's layers")
    parser.add_argument("--layers", type=int, default=8, help="number of layer files")
    parser.add_argument("--repeat", type=int, default=3, help="sequential downloads per variant")
    parser.add_argument("--concurrency", type=int, default=4, help="simultaneous downloads for (a) and (b)")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--prebuilt", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.root, args.run_id, args.prebuilt)
        return
    if not os.path.exists("/proc/self/status"):
        sys.exit("this benchmark reads memory figures from /proc (Linux)")
    asyncio.run(run_bench(args))


if __name__ == "__main__":
    main()
