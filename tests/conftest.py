"""Shared fixtures: a real Redis server process and a real S3 endpoint (moto's threaded server)."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aethera.embedded_redis import EmbeddedRedis, free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` first, longest first (`slow(minutes)`, 1 unless given), the rest in their usual
    order.

    pytest-xdist hands tests out in collection order, so a long test collected last ran alone at the end
    while the other workers idled (the suite's tail was one worker's queue of fault tests). Started first,
    the long tests overlap the many short ones; `make test` also lets idle workers steal queued tests
    (`--dist worksteal`)."""

    def weight(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        if marker is None:
            return 0
        return float(marker.args[0]) if marker.args else 1

    items.sort(key=weight, reverse=True)  # stable: equal weights keep their order


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LANJARON = SHARED_DATA / "lanjaron"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server process of the test session's own, on a free loopback port."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real HTTP S3 endpoint (moto's ThreadedMotoServer) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint_process() -> Iterator[str]:
    """moto's S3 server in a process of its own, for tests in which GDAL reads from it.

    The session's in-process server cannot serve GDAL: pyogrio holds the GIL in some GDAL calls, so a
    /vsis3/ read waiting on a server thread of the same interpreter deadlocks.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # patience: a busy machine starts moto slowly
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def gdal_settings() -> Iterator[Callable[..., None]]:
    """`configure(**settings)`: GDAL of this process configured as the service would from those settings;
    back to the defaults after the test (GDAL's options are process-wide)."""
    from aethera.data.gdal_io import configure_gdal, gdal_options
    from aethera.settings import Settings

    def configure(**settings: Any) -> None:
        configure_gdal(gdal_options(Settings(**settings)))

    yield configure
    configure()


@pytest.fixture(scope="session")
def lanjaron_dir() -> Path:
    if not LANJARON.exists():
        pytest.fail(f"shared test data missing: {LANJARON}")
    return LANJARON


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic sample region (seed 42) and its catalog; returns the catalog's path.

    Written once per test run, not once per folder and pytest worker (10-30 s each on busy cores): under
    pytest-xdist the first worker to need it writes it into the run's shared temporary folder while
    holding a lock; the others wait on the lock and read it. Tests only read it."""
    from aethera.data.sample import generate_sample_data

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory = shared / "sample-data-shared"
    with open(shared / "sample-data.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = shared / "sample-data.complete"  # outside the folder, whose files tests compare
        if not done.exists():
            generate_sample_data(directory, seed=42)
            done.touch()
    return directory / "catalog.toml"
