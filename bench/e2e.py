"""Benchmark: a run's fixed cost, runs per minute, and POST -> COMPLETED latency through the API.

Method: an embedded Redis, the sample region as the dataset catalog, local storage in a temp dir, the
API (`server.py`) and --workers `worker.py` processes (default 1 with the service's default concurrency,
as `make run` starts it), all on 127.0.0.1. Small runs on different 0.5 km x 0.5 km AOIs:
  1. warm-up: one run per worker slot, not counted (the first run of a worker pays the forkserver's
     import of the geospatial stack and the first open of each dataset; printed apart);
  2. single: --single runs one after the other on the otherwise idle service; each is polled every
     10 ms, so the client-observed POST -> COMPLETED time is at most 10 ms late;
  3. burst: --runs runs POSTed at once, polled every 100 ms each; latency is client-observed and also
     POST -> `finished_at` (server clock, same machine; no poll delay in it). Runs per minute are the
     runs completed between the first POST and the last `finished_at`.
Each worker logs one line per attempt with its phases (`jobs/phases.py`): queue pick-up (job due ->
taken), lease, start (record read + PROCESSING write + task copy), spawn (forkserver hand-off of the
child), pipeline (the analysis, less its waits for stored outputs), writes (storing every output),
render (the HTML report), handoff (the rest of the child's life: its start after the fork, encoding,
messages), reap (the child's exit), commit (run.log, the COMPLETED write, task copy, cleanup). The
client adds POST (the API's create) and poll (finished_at -> the client saw COMPLETED). The fixed
cost is the single run's client-observed time less its pipeline phase.

CPU: the CPU seconds each part of the service used in a section (psutil, from /proc: the API process,
the worker processes with their forkserver and every pipeline child it reaped, the Redis server), divided
by the runs of that section. Unlike wall time this hardly changes with other work on the machine, and
2 cores x 60 s / (CPU s per run) is the most runs per minute the machine could complete.

Before/after: `--baseline-ref REF` first measures the same sections on a git worktree of REF (its own
server.py, worker.py and src/ through PYTHONPATH; the bench's code is this one), then this tree, and
prints the ratios. The same is done by hand with `PYTHONPATH=<other>/src python <other>/bench/e2e.py`.

Bias: the bench client, the API, Redis and the workers share the 2 cores (and here other engineers'
jobs): absolute times are inflated and noisy. The 10 ms poll itself loads the API a little.
The per-client rate limit is off (AETHERA_RATE_LIMIT_PER_S=0).

Usage: `python bench/e2e.py [--runs 50] [--single 10] [--workers 1] [--concurrency N] [--baseline-ref REF]`
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from aethera.embedded_redis import EmbeddedRedis, free_port  # noqa: E402
from aethera.jobs.phases import ORDER, parse_line  # noqa: E402


@functools.cache
def _region_to_wgs84() -> tuple[Any, Any]:
    """The sample region and its CRS -> EPSG:4326, made once (each costs PROJ ~0.1 s of CPU)."""
    from pyproj import Transformer

    from aethera.data.sample import sample_region

    return sample_region(), Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)


def _square(east_km: float, north_km: float, side_km: float) -> dict[str, Any]:
    region, t = _region_to_wgs84()
    ring = [list(t.transform(*region.xy(e, n))) for e, n in
            [(east_km, north_km), (east_km + side_km, north_km), (east_km + side_km, north_km + side_km),
             (east_km, north_km + side_km), (east_km, north_km)]]
    return {"type": "Polygon", "coordinates": [ring]}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Driver:
    """The bench client: POSTs runs and polls their tasks, keeping client-side phases per run."""

    def __init__(self, session: aiohttp.ClientSession, project_id: str) -> None:
        self.s = session
        self.project_id = project_id
        self.aois = (_square(-12 + (i % 10) * 2.4, -12 + (i // 10 % 6) * 4.0 + (i // 60) * 0.6, 0.5)
                     for i in range(10_000))

    async def one(self, poll_s: float) -> dict[str, Any]:
        # the AOI is made before the clock starts: the bench's own work is no part of the run's time
        body = {"project_type": "solar", "aoi_geojson": next(self.aois)}
        sent = datetime.now(UTC)
        t0 = time.perf_counter()
        for attempt in range(3):
            try:
                async with self.s.post(f"/projects/{self.project_id}/runs", json=body) as r:
                    assert r.status == 202, await r.text()
                    task_id = (await r.json())["task_id"]
                    break
            except aiohttp.ClientOSError:
                # the request could not be written (a pooled connection the server was closing): it was
                # not sent, so sending it again creates one run, not two
                if attempt == 2:
                    raise
        post_s = time.perf_counter() - t0
        polls = 1
        while True:
            try:
                async with self.s.get(f"/tasks/{task_id}") as r:
                    body = await r.json()
                    if r.status != 200:
                        raise SystemExit(f"GET /tasks/{task_id}: {r.status} {body}")
            except aiohttp.ServerDisconnectedError:
                continue  # an idle pooled connection the server closed: ask again
            if body["status"] in ("COMPLETED", "FAILED", "REVOKED"):
                seen = datetime.now(UTC)
                break
            polls += 1
            await asyncio.sleep(poll_s)
        done = datetime.fromisoformat(body["finished_at"]) if body.get("finished_at") else seen
        return {"task_id": task_id, "status": body["status"], "error": body.get("error"), "sent": sent,
                "done": done, "client_s": (seen - sent).total_seconds(),
                "server_s": (done - sent).total_seconds(), "post_s": post_s,
                "poll_s": max(0.0, (seen - done).total_seconds()), "polls": polls}


async def _session(base: str) -> tuple[aiohttp.ClientSession, str]:
    # generous timeouts: on a loaded machine the API can take tens of seconds to accept a connection
    s = aiohttp.ClientSession(base_url=base, connector=aiohttp.TCPConnector(limit=64),
                              timeout=aiohttp.ClientTimeout(total=600, sock_connect=300))
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
        return s, (await r.json())["id"]


async def _drive(
    base: str, slots: int, n_single: int, n_burst: int, mark: Any
) -> dict[str, list[dict[str, Any]]]:
    """The three sections; `mark(name)` is called as each begins and once at the end (CPU snapshots)."""
    s, project_id = await _session(base)
    try:
        d = Driver(s, project_id)
        warm = list(await asyncio.gather(*(d.one(0.05) for _ in range(slots))))
        mark("single")
        single = [await d.one(0.01) for _ in range(n_single)]
        mark("burst")
        burst = list(await asyncio.gather(*(d.one(0.1) for _ in range(n_burst))))
        mark("end")
        return {"warm-up": warm, "single": single, "burst": burst}
    finally:
        await s.close()


class CpuMeter:
    """CPU seconds of the service's processes, by part, at each `mark` (psutil reads /proc)."""

    def __init__(self, api: int, workers: list[int], redis: int | None) -> None:
        import psutil

        self.api = psutil.Process(api)
        self.workers = [psutil.Process(pid) for pid in workers]
        self.redis = psutil.Process(redis) if redis else None
        self.marks: dict[str, dict[str, float]] = {}

    @staticmethod
    def _own(p: Any) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    @staticmethod
    def _reaped(p: Any) -> float:
        t = p.cpu_times()
        return float(t.children_user + t.children_system)

    def mark(self, name: str) -> None:
        import psutil

        worker = children = 0.0
        for w in self.workers:
            try:
                worker += self._own(w)
                # the forkserver (a child of the worker), the pipeline children it reaped, and any still alive
                for c in w.children(recursive=True):
                    children += self._own(c) + self._reaped(c)
                children += self._reaped(w)
            except psutil.Error:
                continue
        self.marks[name] = {
            "api": self._own(self.api),
            "worker": worker,
            "pipeline children": children,
            "redis": self._own(self.redis) if self.redis else 0.0,
        }

    def per_run(self, start: str, end: str, runs: int) -> dict[str, float]:
        a, b = self.marks.get(start), self.marks.get(end)
        if not a or not b or runs <= 0:
            return {}
        return {k: (b[k] - a[k]) / runs for k in a}


def _worker_phases(log_path: Path) -> dict[str, dict[str, float]]:
    """run id -> phases, from the workers' JSON log lines `run <id> phases: ...`."""
    out: dict[str, dict[str, float]] = {}
    for raw in log_path.read_text(errors="replace").splitlines():
        if "phases:" not in raw:
            continue
        try:
            message = json.loads(raw).get("message", "")
        except ValueError:
            continue
        words = message.split()
        if len(words) > 2 and words[0] == "run" and words[2] == "phases:":
            out[words[1]] = parse_line(message)
    return out


def _report(
    name: str, runs: list[dict[str, Any]], phases: dict[str, dict[str, float]], *, rate: bool,
    cpu: dict[str, float] | None = None,
) -> dict[str, float]:
    """Prints one section; returns its headline figures (for the comparison with a baseline)."""
    ok = [r for r in runs if r["status"] == "COMPLETED"]
    out: dict[str, float] = {}
    print(f"\n{name}: {len(runs)} runs, {len(ok)} completed")
    for r in [r for r in runs if r["status"] != "COMPLETED"][:5]:
        print(f"  NOT COMPLETED {r['task_id']}: {r['status']} {r['error']}")
    if not ok:
        return out
    client = [r["client_s"] for r in ok]
    server = [r["server_s"] for r in ok]
    print(f"  POST -> COMPLETED, client-observed: p50 {_percentile(client, 0.5):.3f} s, "
          f"p95 {_percentile(client, 0.95):.3f} s")
    print(f"  POST -> finished_at (no poll delay): p50 {_percentile(server, 0.5):.3f} s, "
          f"p95 {_percentile(server, 0.95):.3f} s")
    out["POST -> COMPLETED p50 s"] = _percentile(client, 0.5)
    out["POST -> COMPLETED p95 s"] = _percentile(client, 0.95)
    if rate:
        first = min(r["sent"] for r in runs)
        span_s = (max(r["done"] for r in ok) - first).total_seconds()
        print(f"  throughput: {len(ok) / span_s * 60:.0f} runs/min ({len(ok)} runs in {span_s:.2f} s)")
        out["runs/min"] = len(ok) / span_s * 60
    rows = [{**phases.get(r["task_id"], {}), "post": r["post_s"], "poll": r["poll_s"]} for r in ok]
    names = ["post", *[p for p in ORDER if any(p in row for row in rows)], "poll"]
    medians = {p: statistics.median(row.get(p, 0.0) for row in rows) for p in names}
    print("  phase medians, ms: " + "  ".join(f"{p} {1000 * medians[p]:.1f}" for p in names))
    fixed = [r["client_s"] - phases.get(r["task_id"], {}).get("pipeline", 0.0) for r in ok]
    pipeline = [phases.get(r["task_id"], {}).get("pipeline", 0.0) for r in ok]
    print(f"  fixed cost (client-observed less the pipeline phase): p50 {1000 * _percentile(fixed, 0.5):.0f} ms, "
          f"p95 {1000 * _percentile(fixed, 0.95):.0f} ms; pipeline p50 {1000 * _percentile(pipeline, 0.5):.0f} ms")
    out["fixed cost p50 ms"] = 1000 * _percentile(fixed, 0.5)
    out["pipeline p50 ms"] = 1000 * _percentile(pipeline, 0.5)
    if cpu:
        total = sum(cpu.values())
        print("  CPU per run, ms: " + "  ".join(f"{k} {1000 * v:.0f}" for k, v in cpu.items())
              + f"  = {1000 * total:.0f} ms; 2 cores allow at most {2 * 60 / total:.0f} runs/min")
        print(f"  (the API's share includes the bench's own polls: {statistics.mean(r['polls'] for r in ok):.0f} "
              "GET /tasks per run)")
        out["CPU per run ms"] = 1000 * total
        out["CPU-bound runs/min on 2 cores"] = 2 * 60 / total
    return out


def _measure(root: Path, args: argparse.Namespace, concurrency: int, tmp: Path) -> dict[str, Any]:
    """Start Redis, the API and the workers of the tree at `root`, drive the sections, stop everything."""
    procs: list[subprocess.Popen[bytes]] = []
    redis = EmbeddedRedis(tmp / "redis")
    redis.start()
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis.url, "STORAGE_BACKEND": "local",
           "STORAGE_BASE_PATH": str(tmp / "storage"), "AETHERA_HOST": "127.0.0.1",
           "AETHERA_PORT": str(port), "AETHERA_RATE_LIMIT_PER_S": "0",
           # the tree under test, not the installed package
           "PYTHONPATH": os.pathsep.join([str(root / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
           # BENCH_API_LOG_LEVEL=INFO keeps the API's access lines (shown when the bench fails)
           "AETHERA_LOG_LEVEL": os.environ.get("BENCH_API_LOG_LEVEL", "WARNING"),
           # the header deadline (15 s) closes connections whose request the API has not read in time:
           # on a machine this loaded, 50 POSTs at once can wait that long
           "AETHERA_HEADER_TIMEOUT_S": "120",
           "AETHERA_DATASETS": str(tmp.parent / "sample" / "catalog.toml"),
           "AETHERA_WORKER_CONCURRENCY": str(concurrency)}
    api_log = open(tmp / "api.log", "ab")
    worker_log_path = tmp / "workers.log"
    worker_log = open(worker_log_path, "ab")
    try:
        procs.append(subprocess.Popen([sys.executable, str(root / "server.py")], env=env, stdout=api_log,
                                      stderr=api_log))
        for _ in range(args.workers):  # INFO: the per-attempt phase lines
            procs.append(subprocess.Popen([sys.executable, str(root / "worker.py")],
                                          env={**env, "AETHERA_LOG_LEVEL": "INFO"}, stdout=worker_log,
                                          stderr=worker_log))
        meter = CpuMeter(procs[0].pid, [p.pid for p in procs[1:]],
                         redis.process.pid if redis.process is not None else None)
        results = asyncio.run(_drive(f"http://127.0.0.1:{port}", args.workers * concurrency, args.single,
                                     args.runs, meter.mark))
    except BaseException:
        api_log.flush()
        print(f"API process exit code: {procs[0].poll() if procs else None}", file=sys.stderr)
        print("API log, last lines:\n" + "\n".join((tmp / "api.log").read_text(errors="replace")
                                                    .splitlines()[-15:]), file=sys.stderr)
        raise
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        api_log.close()
        worker_log.close()
        redis.stop()
    ok = {name: sum(r["status"] == "COMPLETED" for r in rs) for name, rs in results.items()}
    return {"results": results, "phases": _worker_phases(worker_log_path),
            "cpu": {"single": meter.per_run("single", "burst", ok["single"]),
                    "burst": meter.per_run("burst", "end", ok["burst"])}}


def _print(label: str, m: dict[str, Any], runs: int) -> dict[str, dict[str, float]]:
    print(f"\n=== {label} ===")
    results, phases = m["results"], m["phases"]
    _report("warm-up (first run of each slot, not counted below)", results["warm-up"], phases, rate=False)
    return {
        "single": _report("single run on an idle service, one after the other", results["single"], phases,
                          rate=False, cpu=m["cpu"]["single"]),
        "burst": _report(f"{runs} runs POSTed at once", results["burst"], phases, rate=True,
                         cpu=m["cpu"]["burst"]),
    }


def _tree_at(ref: str, dest: Path) -> Path:
    """The files of `ref` of this repository, unpacked into `dest` (no change to the repository)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs POSTed at once (burst)")
    parser.add_argument("--single", type=int, default=10, help="runs one after the other (idle service)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None, help="runs at once per worker process "
                        "(default: the service's AETHERA_WORKER_CONCURRENCY default)")
    parser.add_argument("--baseline-ref", default=None, help="a git ref of this repository measured first, "
                        "with the same parameters, as the baseline (say main)")
    args = parser.parse_args()

    from aethera.data.sample import generate_sample_data
    from aethera.settings import Settings

    concurrency = args.concurrency or Settings().worker_concurrency
    with tempfile.TemporaryDirectory(prefix="aethera-bench-e2e-") as tmp_dir:
        tmp = Path(tmp_dir)
        generate_sample_data(tmp / "sample")
        measured: list[tuple[str, dict[str, Any]]] = []
        if args.baseline_ref:
            base_root = _tree_at(args.baseline_ref, tmp / "baseline-tree")
            (tmp / "baseline").mkdir()
            measured.append((f"baseline: {args.baseline_ref}", _measure(base_root, args, concurrency, tmp / "baseline")))
        (tmp / "this").mkdir()
        measured.append(("this tree", _measure(ROOT, args, concurrency, tmp / "this")))

    print(f"small runs (0.25 km² AOIs, sample region), {args.workers} worker process(es) x concurrency "
          f"{concurrency}; load average at the end {os.getloadavg()[0]:.1f}")
    figures = [(label, _print(label, m, args.runs)) for label, m in measured]
    if len(figures) == 2:
        (base_label, base), (_, this) = figures
        print(f"\n=== this tree / {base_label} ===")
        for section in ("single", "burst"):
            for k, v in this[section].items():
                b = base[section].get(k)
                if b:
                    print(f"  {section:6s} {k}: {b:.3f} -> {v:.3f} (x{v / b:.2f})")


if __name__ == "__main__":
    main()
