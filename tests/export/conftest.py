"""Fixtures of the export tests: the real API (`create_app`) on a real storage backend, a local
directory or a bucket on the session's moto S3 server. The run data lives in exportkit.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    client: TestClient
    storage: Storage
    backend: str
    s3_port: int | None

    @property
    def app(self) -> web.Application:
        return self.client.app  # type: ignore[return-value]


MakeService = Callable[[str], Awaitable[ExportService]]


@pytest.fixture
async def make_service(
    aiohttp_client: Any, tmp_path: Path, redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[MakeService]:
    """Start the real API (create_app) on the given backend; the storage is the app's own."""

    async def make(backend: str) -> ExportService:
        endpoint = bucket = None
        port = None
        if backend == "s3":
            endpoint = request.getfixturevalue("s3_endpoint")
            bucket = await new_bucket(endpoint)
            port = int(endpoint.rsplit(":", 1)[1])
        (tmp_path / "storage").mkdir(exist_ok=True)
        settings = load_settings(service_env(tmp_path, redis_url, backend, endpoint, bucket))
        client = await aiohttp_client(create_app(settings))
        return ExportService(client=client, storage=client.app[STORAGE], backend=backend, s3_port=port)

    yield make


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def service(make_service: MakeService, backend: str) -> ExportService:
    return await make_service(backend)


@pytest.fixture
async def local_service(make_service: MakeService) -> ExportService:
    return await make_service("local")
