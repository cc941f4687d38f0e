"""Fixtures of the export tests: the real API (`create_app`) on a real storage backend, a local
directory or a bucket on the session's moto S3 server. The run data lives in exportkit.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from exportkit import new_bucket, service_env

from aethera.api.app import create_app
from aethera.api.keys import STORAGE
from aethera.settings import load_settings
from aethera.storage.base import Storage


@dataclass
class ExportService:
    client: TestClient | aiohttp.ClientSession  # both: .get/.head/.request(path relative to the server)
    app: web.Application
    port: int
    storage: Storage
    backend: str
    s3_port: int | None


MakeService = Callable[..., Awaitable[ExportService]]


@pytest.fixture
async def make_service(
    aiohttp_client: Any, tmp_path: Path, redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[MakeService]:
    """Start the real API (create_app) on the given backend; the storage is the app's own.

    pytest-aiohttp's servers always cancel the handler of a lost connection; `serve()` (web.run_app)
    does not, so `handler_cancellation=False` runs the app on an AppRunner configured like production.
    """
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(backend: str, *, handler_cancellation: bool = True) -> ExportService:
        endpoint = bucket = None
        s3_port = None
        if backend == "s3":
            endpoint = request.getfixturevalue("s3_endpoint")
            bucket = await new_bucket(endpoint)
            s3_port = int(endpoint.rsplit(":", 1)[1])
        (tmp_path / "storage").mkdir(exist_ok=True)
        settings = load_settings(service_env(tmp_path, redis_url, backend, endpoint, bucket))
        app = create_app(settings)
        if handler_cancellation:
            client = await aiohttp_client(app)
            assert client.port is not None
            return ExportService(client, app, client.port, app[STORAGE], backend, s3_port)
        runner = web.AppRunner(app, handler_cancellation=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        cleanups.extend([runner.cleanup, session.close])
        return ExportService(session, app, port, app[STORAGE], backend, s3_port)

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def service(make_service: MakeService, backend: str) -> ExportService:
    return await make_service(backend)


@pytest.fixture
async def local_service(make_service: MakeService) -> ExportService:
    return await make_service("local")
