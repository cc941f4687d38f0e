"""Fixtures of the operations tests: a Redis database of their own on the session's real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import servicekit as kit
from redis.asyncio import Redis

from aethera.jobs import records
from aethera.models import RunRecord, utc_now_iso
from aethera.settings import Settings
from aethera.storage.artifacts import save_artifact
from aethera.storage.factory import open_storage


async def write_completed_run(settings: Settings, payload_bytes: int) -> str:
    """A COMPLETED run in the storage of `settings`, written the way a worker writes one, with one
    incompressible output of `payload_bytes` (so its export really is that large on the wire)."""
    storage = await open_storage(settings)
    try:
        run_id = uuid.uuid4().hex
        now = utc_now_iso()
        record = {
            "run_id": run_id,
            "task_id": run_id,
            "project_id": uuid.uuid4().hex,
            "project_type": "solar",
            "params": {"project_type": "solar", "country": None, "capacity_mw": 10.0, "buffer_km": 5.0},
            "aoi_source": "geojson",
            "created_at": now,
            "updated_at": now,
            "status": "COMPLETED",
            "attempts": 1,
            "started_at": now,
            "finished_at": now,
        }
        await save_artifact(storage, run_id, "run.log", os.urandom(payload_bytes), "text/plain")
        await records.create_run(storage, msgspec.convert(record, RunRecord), b"{}", records.now_ms())
        return run_id
    finally:
        await storage.close()


# A database number no other test package uses, so flushing it touches nothing of theirs.
OPS_DB = 13


@pytest.fixture
def ops_redis_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{OPS_DB}"


@pytest.fixture
async def ops_redis(ops_redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(ops_redis_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


# the service kit's fixtures (tests/servicekit.py, shared with the api, jobs and security tests)
sample_catalog = kit.sample_catalog
redis_db = kit.redis_db
make_service = kit.make_service
