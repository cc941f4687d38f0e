"""A whole service of real processes per test: its own Redis, the API and workers as child processes.

Each fault test stops, restarts or kills parts of this stack, so nothing here is shared with the rest
of the suite (the session Redis and S3 are never touched). The API runs with authentication on (a
keys file made by `keys create`) so the faults are proven on the configuration production runs.

Runs are made slow on purpose by `slow_worker.py`: the same worker (`run_worker()`) with a pause after
each pipeline progress report, so a test can act "in the middle of a run" without racing it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aethera.embedded_redis import EmbeddedRedis, free_port
from aethera.security.apikeys import create_key

REPO = Path(__file__).resolve().parents[2]
SLOW_WORKER = Path(__file__).with_name("slow_worker.py")
BOUNDARY_WORKER = Path(__file__).with_name("boundary_worker.py")
FINAL = frozenset({"COMPLETED", "FAILED", "REVOKED"})
START_TIMEOUT_S = 120.0  # two cores shared by everyone: importing geopandas can be slow
# the service works normally again by this request (counted, not timed) after a backend is reachable
# again: no cool-down, no cached "down"; one request may still meet a connection the outage broke
RECOVERY_TRIES = 3
# the test's patience for anything it waits on: generous, because two cores shared with other work can
# stall any process for seconds; a test asserts on what happened, never on how soon
PATIENCE_S = 120.0


def assert_not_5xx_except_unavailable(resp: object, what: str) -> None:
    """While a backend is away an answer is a normal one or 503 backend_unavailable; never another 5xx."""
    status = resp.status  # type: ignore[attr-defined]
    assert status < 500 or status == 503, f"{what}: {resp}"
    if status == 503:
        body = resp.json()  # type: ignore[attr-defined]
        assert body["code"] == "backend_unavailable" and body["detail"], f"{what}: {resp}"
        # no trace, no server path
        assert "Traceback" not in resp.body.decode() and "/tmp/" not in resp.body.decode(), body  # type: ignore[attr-defined]


def sample_aoi(east_km: float = 5.0, north_km: float = -3.0, size_km: float = 1.0) -> dict[str, Any]:
    """A square AOI inside the synthetic sample region, as a GeoJSON Polygon in EPSG:4326."""
    from pyproj import Transformer

    from aethera.data.sample import CRS, sample_region

    region = sample_region()
    to_wgs84 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    x0, y0 = region.xy(east_km, north_km)
    x1, y1 = x0 + size_km * 1000, y0 + size_km * 1000
    ring = [to_wgs84.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    return {"type": "Polygon", "coordinates": [[[round(a, 7), round(b, 7)] for a, b in ring]]}


def _file_size_limit(max_file_bytes: int | None) -> Callable[[], None] | None:
    """A child's pre-exec hook making a disk that is full past `max_file_bytes` (None: no limit).

    Writes past the size fail with EFBIG (Python ignores SIGXFSZ), even as root, where permissions
    refuse nothing; the child's output goes through a pipe, which the limit does not touch."""
    if max_file_bytes is None:
        return None
    limit = max_file_bytes

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def wait_reachable(url: str, timeout_s: float = PATIENCE_S) -> None:
    """Wait until an HTTP endpoint answers anything (a restarted backend is listening again)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return  # an answer, if not a 2xx one
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout_s:g} s") from None
            time.sleep(0.05)


def requests_until(stack: Stack, check: Callable[[], Any], message: str, timeout_s: float = PATIENCE_S) -> int:
    """Call `check` (one or more requests) until it passes; return how many calls it took. The count is
    what a test asserts on (a bound in requests holds on a loaded machine, one in seconds does not)."""
    tries = 0

    def counted() -> Any:
        nonlocal tries
        tries += 1
        return check()

    stack.wait_until(counted, timeout_s, message, every_s=0.05)
    return tries


class Response:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


class Stack:
    """Redis, the API and workers of one test, as processes this test owns."""

    def __init__(self, root: Path, catalog: Path, **settings: str) -> None:
        self.root = root
        self.redis = EmbeddedRedis(root / "redis", port=free_port())
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.storage_root = root / "storage"
        self.keys_file = root / "keys.json"
        self.key, _ = create_key(self.keys_file, "acme")
        self.admin_key, _ = create_key(self.keys_file, "ops", scopes=["admin"])  # /metrics
        self.env = {
            **os.environ,
            "AETHERA_ENV": "development",
            "AETHERA_HOST": "127.0.0.1",
            "AETHERA_PORT": str(self.port),
            "AETHERA_LOG_LEVEL": "INFO",
            "AETHERA_API_KEYS_FILE": str(self.keys_file),
            "AETHERA_RATE_LIMIT_PER_S": "1000",
            "AETHERA_RATE_LIMIT_BURST": "1000",
            "REDIS_URL": self.redis.url,
            "STORAGE_BACKEND": "local",
            "STORAGE_BASE_PATH": str(self.storage_root),
            "AETHERA_DATASETS": str(catalog),
            "AETHERA_RUN_LEASE_S": "4",
            "AETHERA_RUN_MAX_ATTEMPTS": "3",
            "AETHERA_RETRY_BACKOFF_BASE_S": "0.5",
            "AETHERA_RETRY_BACKOFF_MAX_S": "2",
            "AETHERA_WORKER_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._log_by_pid: dict[int, Path] = {}

    # --- processes ----------------------------------------------------------------------------

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, preexec: Callable[[], None] | None = None
    ) -> subprocess.Popen[bytes]:
        # output goes through a pipe that a thread of this process drains into the log file: a child
        # with a file-size limit must not trip over the size of its own log
        log = self.root / f"{name}-{len(self._logs)}.log"
        self._logs.append(log)
        process = subprocess.Popen(
            argv, cwd=REPO, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=preexec
        )

        def drain() -> None:
            assert process.stdout is not None
            with open(log, "ab") as out:
                for line in process.stdout:
                    out.write(line)
                    out.flush()

        threading.Thread(target=drain, daemon=True).start()
        self._log_by_pid[process.pid] = log
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        log = self._log_by_pid.get(process.pid)
        return log.read_text(errors="replace") if log is not None and log.exists() else ""

    def start_redis(self) -> None:
        self.redis.start(timeout_s=PATIENCE_S)  # a busy machine can take seconds to start a process

    def stop_redis(self, *, keep_data: bool) -> None:
        """Stop Redis. keep_data: it saves a snapshot and loads it when started again (a restart);
        otherwise it comes back empty (every key lost)."""
        import redis as redis_sync

        if keep_data:
            client = redis_sync.Redis.from_url(self.redis.url)
            try:
                client.shutdown(save=True)
            except redis_sync.exceptions.ConnectionError:
                pass  # the server closes the connection as it exits
            finally:
                client.close()
            assert self.redis.process is not None
            self.redis.process.wait(timeout=10)
        self.redis.stop()
        if not keep_data:
            (self.redis.data_dir / "dump.rdb").unlink(missing_ok=True)

    def start_api(self, *, max_file_bytes: int | None = None) -> None:
        """`python server.py`; `max_file_bytes`: no file it writes may grow past this (a full disk)."""
        self.api = self._spawn("api", [sys.executable, "server.py"], preexec=_file_size_limit(max_file_bytes))
        self.wait_until(lambda: self._answers("/health"), START_TIMEOUT_S, "the API did not start")

    def start_worker(
        self,
        *,
        step_delay_s: float = 0.0,
        max_file_bytes: int | None = None,
        extra_env: dict[str, str] | None = None,
        script: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker process: `python worker.py`, the slow variant when `step_delay_s` is set, or `script`
        (a variant of the worker kept in this folder)."""
        env = {**self.env, **(extra_env or {})}
        argv = [sys.executable, "worker.py"]
        if step_delay_s:
            env["AETHERA_TEST_STEP_DELAY_S"] = str(step_delay_s)
            argv = [sys.executable, str(SLOW_WORKER)]
        if script is not None:
            argv = [sys.executable, str(script)]
        worker = self._spawn("worker", argv, env, _file_size_limit(max_file_bytes))
        self.workers.append(worker)
        return worker

    def wait_worker_ready(self, process: subprocess.Popen[bytes], timeout_s: float = START_TIMEOUT_S) -> None:
        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the worker exited with status {process.returncode}\n{self.logs()}")
            return "ready" in self.log_of(process)

        self.wait_until(ready, timeout_s, "the worker did not get ready")

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        children = [p for p in [self.api, *self.workers] if p is not None]
        for p in children:
            if p.poll() is None:
                p.terminate()
        for p in children:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.redis.stop()

    def logged(self, text: str) -> bool:
        """Whether any process of this stack has logged `text` (every log read whole)."""
        return any(text in log.read_text(errors="replace") for log in self._logs if log.exists())

    def assert_moved_on_by_recovery(self, run_id: str) -> None:
        """The run's lost attempt was handed on by the recovery sweep, the lease mechanism (the lease key
        expired on Redis's clock, a sweep saw it): the cause is asserted, not how many seconds it took,
        which on a loaded machine is anyone's guess."""
        assert self.logged(f"recovery: run {run_id} re-queued as generation"), (
            f"run {run_id} was not moved on by the recovery sweep\n{self.logs()}"
        )

    def logs(self) -> str:
        parts = []
        for log in self._logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"----- {log.name} -----\n{text[-6000:]}")
        return "\n".join(parts)

    # --- HTTP ---------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, timeout_s: float = 120.0
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if auth:
            # operator routes need the admin scope; everything else is the tenant's
            headers["Authorization"] = f"Bearer {self.admin_key if path == '/metrics' else self.key}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return Response(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read(), dict(exc.headers))

    def _answers(self, path: str) -> bool:
        try:
            self.request("GET", path, auth=False, timeout_s=2)
            return True
        except OSError:
            return False

    def wait_until(self, check: Callable[[], Any], timeout_s: float, message: str, every_s: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} within {timeout_s:g} s\n{self.logs()}")
            time.sleep(every_s)

    # --- the service's calls ------------------------------------------------------------------

    def create_project(self) -> str:
        resp = self.request("POST", "/projects", {"name": "fault test", "country": "DEU"})
        assert resp.status == 201, resp
        return str(resp.json()["id"])

    def create_run(self, project_id: str, **aoi: float) -> str:
        # reuse off: these tests attack the computation of every run, and their runs share one AOI
        body = {
            "project_type": "solar",
            "aoi_geojson": sample_aoi(**aoi),
            "config": {"capacity_mw": 10, "reuse": False},
        }
        resp = self.request("POST", f"/projects/{project_id}/runs", body)
        assert resp.status == 202, resp
        return str(resp.json()["run_id"])

    def task(self, task_id: str) -> Response:
        return self.request("GET", f"/tasks/{task_id}")

    def read_object(self, key: str) -> bytes | None:
        """A stored object, read straight from the backend (disk or the S3 bucket); None when missing."""
        if self.env.get("STORAGE_BACKEND") == "s3":
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=self.env["S3_ENDPOINT_URL"],
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            try:
                return bytes(client.get_object(Bucket=self.env["S3_BUCKET"], Key=key)["Body"].read())
            except client.exceptions.NoSuchKey:
                return None
        path = self.storage_root / key
        return path.read_bytes() if path.is_file() else None

    def run_record(self, run_id: str) -> dict[str, Any]:
        """The run record as stored (the truth), read from the backend."""
        raw = self.read_object(f"runs/{run_id}/run.json")
        assert raw is not None, f"no record of run {run_id}"
        return dict(json.loads(raw))

    def wait_for_status(self, task_id: str, statuses: set[str] | frozenset[str], timeout_s: float) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            try:
                resp = self.task(task_id)
            except OSError:
                return None
            if resp.status == 200 and resp.json()["status"] in statuses:
                return dict(resp.json())
            return None

        return dict(self.wait_until(check, timeout_s, f"task {task_id} did not reach {sorted(statuses)}"))


def s3_settings(endpoint_url: str, bucket: str) -> dict[str, str]:
    """The settings of a stack on a fresh bucket of a moto server (created here)."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return {
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": endpoint_url,
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing",
        "S3_REGION": "us-east-1",
    }
