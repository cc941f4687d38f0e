"""The batch feeder: a batch's runs are created in the workers, chunk by chunk; a feeder cut short
resumes from what is stored (nothing lost, no site twice); a cancelled batch creates no more runs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import redis as sync_redis
import servicekit as kit

from aethera import keyspace as keys
from aethera.api.keys import AppBackends
from aethera.jobs import batch_feed, creation


def _sites(count: int) -> dict[str, Any]:
    features = []
    for i in range(count):
        feature = kit.aoi_feature(east_km=-10.0 + 2.0 * i, north_km=4.0, side_km=0.2)
        feature["properties"] = {"name": f"F{i}"}
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


async def _batch(client: Any, count: int) -> tuple[str, dict[str, Any]]:
    resp = await client.post("/projects", json={"name": "feed", "country": "DEU"})
    project_id = (await resp.json())["id"]
    resp = await client.post(
        f"/projects/{project_id}/batches", json={"project_type": "solar", "features": _sites(count)}
    )
    assert resp.status == 202, await resp.text()
    return project_id, await resp.json()


async def _status(client: Any, batch_id: str) -> dict[str, Any]:
    return await (await client.get(f"/batches/{batch_id}")).json()


async def test_a_feeder_lost_mid_chunk_resumes_without_creating_a_site_twice(
    make_service: Any, redis_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_feed, "CHUNK_SITES", 2)  # 5 sites: chunks 0-1, 2-3, 4
    svc = await make_service()
    c = svc.client
    project_id, created = await _batch(c, 5)
    batch_id = created["batch_id"]
    status = await _status(c, batch_id)
    assert status["created"] == 0 and status["counts"]["PENDING"] == 5 and not status["done"]

    # the feeder of chunk 0 created its first site, then its worker died and Redis lost the queue
    backends = AppBackends(svc.app)
    batch = await batch_feed.load_batch(backends.storage, batch_id)
    first = batch.sites[0]
    aois = msgspec.json.decode(await backends.storage.read(keys.batch_aois_key(batch_id)), type=list[msgspec.Raw])
    await creation.create(
        backends,
        creation.NewRun(
            tenant=batch.tenant,
            project_id=project_id,
            project_type=batch.project_type,
            params=batch.params,
            config=batch.config,
            aoi_source="geojson",
            aoi_path=None,
            aoi=None,
            aoi_bytes=bytes(aois[0]),
            batch_id=batch_id,
            background=True,
        ),
        None,
        key=first.content_key,
        run_id=first.run_id,
    )
    sync_redis.Redis.from_url(redis_db).flushdb()
    assert await backends.storage.exists(keys.active_batch_key(batch_id))

    # a worker's recovery sweep finds the batch still active and queues the feeder at its cursor
    async with kit.in_process_worker(svc.settings):
        status = await kit.wait_for(lambda: _created_all(c, batch_id, 5), timeout_s=120)
    assert status["created"] == 5
    listed = await (await c.get(f"/runs?project_id={project_id}")).json()
    assert sorted(r["run_id"] for r in listed) == sorted(s.run_id for s in batch.sites)  # each once
    assert not await backends.storage.exists(keys.active_batch_key(batch_id))


async def _created_all(client: Any, batch_id: str, total: int) -> dict[str, Any] | None:
    status = await _status(client, batch_id)
    return status if status["created"] == total else None


async def test_a_batch_cancelled_before_its_feeder_ran_creates_no_run(make_service: Any) -> None:
    svc = await make_service()
    c = svc.client
    project_id, created = await _batch(c, 3)
    batch_id = created["batch_id"]
    assert (await c.delete(f"/batches/{batch_id}")).status == 202
    backends = AppBackends(svc.app)
    assert await batch_feed.feed_chunk(backends, batch_id, 0) == "cancelled"
    status = await _status(c, batch_id)
    assert status["created"] == 0 and status["counts"]["REVOKED"] == 3 and status["done"]
    assert await (await c.get(f"/runs?project_id={project_id}")).json() == []
    assert not await backends.storage.exists(keys.active_batch_key(batch_id))
