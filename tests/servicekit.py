"""What the API and jobs tests share: the service's settings on a test Redis and test storage, the
sample region as the dataset catalog, small AOIs inside and outside it, in-process and subprocess
workers, and a poller. Loaded by tests/api/conftest.py and tests/jobs/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest
import redis as sync_redis
from botocore.config import Config

from aethera.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
TEST_DB = 7  # the service's keys go to their own database of the session's Redis, flushed per test
FINAL = {"COMPLETED", "FAILED", "REVOKED"}
S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def db_url(redis_url: str, db: int = TEST_DB) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="session")
def sample_catalog(sample_data: Path) -> Path:
    """The synthetic sample region's catalog (written once per test run, tests/conftest.py)."""
    return sample_data


@functools.cache
def _region_and_transformer() -> tuple[Any, Any]:
    """Built once: a pyproj Transformer takes a second or more on a busy machine (a 200-site grid)."""
    from pyproj import Transformer

    from aethera.data.sample import sample_region

    return sample_region(), Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True)


def _square_lonlat(east_km: float, north_km: float, side_km: float) -> list[list[float]]:
    region, to_wgs84 = _region_and_transformer()
    corners = [
        (east_km, north_km),
        (east_km + side_km, north_km),
        (east_km + side_km, north_km + side_km),
        (east_km, north_km + side_km),
        (east_km, north_km),
    ]
    ring = []
    for e, n in corners:
        x, y = region.xy(e, n)
        lon, lat = to_wgs84.transform(x, y)
        ring.append([round(lon, 7), round(lat, 7)])
    return ring


def aoi_feature(east_km: float = 6.0, north_km: float = -8.0, side_km: float = 0.8) -> dict[str, Any]:
    """A small square AOI in the sample region, as a GeoJSON Feature (EPSG:4326)."""
    return {
        "type": "Feature",
        "properties": {"name": "test site"},
        "geometry": {"type": "Polygon", "coordinates": [_square_lonlat(east_km, north_km, side_km)]},
    }


def outside_aoi() -> dict[str, Any]:
    """A valid AOI in Bavaria, far outside the sample region."""
    return {
        "type": "Polygon",
        "coordinates": [[[11.0, 48.0], [11.01, 48.0], [11.01, 48.01], [11.0, 48.01], [11.0, 48.0]]],
    }


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    """The URL of the tests' own Redis database, empty at the start of each test."""
    url = db_url(redis_url)
    client = sync_redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


async def new_bucket(endpoint: str) -> str:
    name = f"svc-{uuid.uuid4().hex[:16]}"
    session = aioboto3.Session(**S3_CREDENTIALS)
    async with session.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})) as c:
        await c.create_bucket(Bucket=name)
    return name


def service_env(
    *,
    tmp_path: Path,
    redis_url: str,
    catalog: Path,
    backend: str = "local",
    s3_endpoint: str | None = None,
    bucket: str | None = None,
    **overrides: Any,
) -> dict[str, str]:
    """Environment variables of one service instance (API and workers read the same)."""
    env = {
        "REDIS_URL": redis_url,
        "AETHERA_DATASETS": str(catalog),
        "STORAGE_BACKEND": backend,
        "STORAGE_BASE_PATH": str(tmp_path / "storage"),
        "AETHERA_CORS_ORIGINS": "http://localhost:5173",
        # 6 s, not less: on a loaded machine a heartbeat's Redis round trip can miss a shorter lease's renewal
        # window, and a healthy attempt then gives its run up (the lifecycle tests use 6 s for the same reason)
        "AETHERA_RUN_LEASE_S": "6",
        # deadlines have their own tests (tests/faults/test_hung_backends.py); elsewhere a call on a loaded
        # machine must not be cut at the 5 s production default
        "AETHERA_BACKEND_DEADLINE_S": "60",
        "AETHERA_RETRY_BACKOFF_BASE_S": "0.2",
        "AETHERA_RETRY_BACKOFF_MAX_S": "1",
        "AETHERA_LOG_LEVEL": "WARNING",
        # tests poll tasks every 20-100 ms; the per-client rate limit has its own tests (tests/security)
        "AETHERA_RATE_LIMIT_PER_S": "0",
    }
    if backend == "s3":
        assert s3_endpoint and bucket
        env.update(
            {
                "S3_ENDPOINT_URL": s3_endpoint,
                "S3_BUCKET": bucket,
                "S3_ACCESS_KEY_ID": "testing",
                "S3_SECRET_ACCESS_KEY": "testing",
                "S3_REGION": "us-east-1",
            }
        )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    return load_settings(env)


@contextlib.asynccontextmanager
async def in_process_worker(settings: Settings, open_storage: Any = None) -> AsyncIterator[Any]:
    """A real arq worker of the service on this test's event loop."""
    from aethera.jobs.worker import build_worker

    worker = build_worker(settings, handle_signals=False, open_storage=open_storage)
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        # a job whose run is already final may still be doing the queue's bookkeeping: let it finish,
        # as a worker stopping on SIGTERM would (cancelling it mid-way fails arq's close())
        deadline = time.monotonic() + 60
        while any(not t.done() for t in worker.tasks.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await worker.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class WorkerProcess:
    """`python worker.py` as a child process, pointed at the test's Redis, storage and catalog."""

    def __init__(self, env: dict[str, str], log_path: Path, script: Path | None = None) -> None:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("AETHERA_", "S3_", "STORAGE_"))}
        full.update(env)
        full["PYTHONUNBUFFERED"] = "1"
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(script or ROOT / "worker.py")],
            env=full,
            cwd=str(ROOT),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: the worker dies without a chance to clean up (a lost machine)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def poll_task(
    client: Any, task_id: str, until: set[str] | None = None, timeout_s: float = 120.0, interval_s: float = 0.1
) -> dict[str, Any]:
    """GET /tasks/{id} until its status is in `until` (default: final)."""
    until = until or FINAL
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await client.get(f"/tasks/{task_id}")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        if body["status"] in until:
            return body
        await asyncio.sleep(interval_s)
    raise AssertionError(f"task {task_id} still {body.get('status')} after {timeout_s} s: {body}")


async def wait_for(predicate: Any, timeout_s: float = 120.0, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval_s)
    raise AssertionError("condition not met in time")


class Service:
    """One API instance under test: its aiohttp test client, settings and environment."""

    def __init__(self, client: Any, settings: Settings, env: dict[str, str]) -> None:
        self.client = client
        self.settings = settings
        self.env = env

    @property
    def app(self) -> Any:
        return self.client.server.app


@pytest.fixture
def make_service(
    aiohttp_client: Any, tmp_path: Path, redis_db: str, sample_catalog: Path, request: pytest.FixtureRequest
) -> Any:
    """`await make_service(backend="local"|"s3", **env_overrides)` -> Service (API on a test server)."""
    from aethera.api.app import create_app

    async def make(backend: str = "local", **overrides: Any) -> Service:
        extra: dict[str, Any] = {}
        if backend == "s3":
            endpoint = request.getfixturevalue("s3_endpoint")
            extra = {"s3_endpoint": endpoint, "bucket": await new_bucket(endpoint)}
        env = service_env(
            tmp_path=tmp_path, redis_url=redis_db, catalog=sample_catalog, backend=backend, **extra, **overrides
        )
        settings = settings_from(env)
        client = await aiohttp_client(create_app(settings))
        return Service(client, settings, env)

    return make
