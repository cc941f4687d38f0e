"""The in-process copy of finished runs' answers (`api/final_cache.py`): what it serves, to whom, and
that nothing unfinished is ever kept."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import redis as sync_redis
from servicekit import aoi_feature

from aethera import keyspace as keys
from aethera.api.final_cache import FinalAnswers
from aethera.security.apikeys import create_key


def test_entries_expire_and_the_least_recently_used_goes_first() -> None:
    answers = FinalAnswers(max_entries=2, ttl_s=3600.0)
    answers.put("task", "a", "acme", b"A")
    answers.put("task", "b", "acme", b"B")
    assert answers.get("task", "a") == ("acme", b"A")  # a is now the most recently used
    answers.put("run", "a", "acme", b"R")  # the kind is part of the key: evicts b, not a
    assert answers.get("task", "b") is None
    assert answers.get("task", "a") == ("acme", b"A") and answers.get("run", "a") == ("acme", b"R")
    expired = FinalAnswers(ttl_s=0.0)
    expired.put("task", "a", "acme", b"A")
    assert expired.get("task", "a") is None


async def test_finished_answers_are_kept_per_tenant_and_unfinished_never(make_service: Any, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    acme_key, _ = create_key(keys_file, "acme")
    globex_key, _ = create_key(keys_file, "globex")
    svc = await make_service(AETHERA_API_KEYS_FILE=str(keys_file), AETHERA_RATE_LIMIT_PER_S="0")
    c = svc.client
    acme = {"Authorization": f"Bearer {acme_key}"}
    globex = {"Authorization": f"Bearer {globex_key}"}
    resp = await c.post("/projects", json={"name": "acme site", "country": "DEU"}, headers=acme)
    pid = (await resp.json())["id"]
    resp = await c.post(
        f"/projects/{pid}/runs", json={"project_type": "solar", "aoi_geojson": aoi_feature()}, headers=acme
    )
    assert resp.status == 202
    rid = (await resp.json())["run_id"]

    # PENDING: read (twice) and then cancelled; the next read shows the change at once (nothing was kept)
    for _ in range(2):
        for path in (f"/tasks/{rid}", f"/runs/{rid}"):
            resp = await c.get(path, headers=acme)
            assert resp.status == 200 and (await resp.json())["status"] == "PENDING"
    assert (await c.delete(f"/tasks/{rid}", headers=acme)).status == 200
    first: dict[str, bytes] = {}
    for path in (f"/tasks/{rid}", f"/runs/{rid}"):
        resp = await c.get(path, headers=acme)
        assert resp.status == 200 and (await resp.json())["status"] == "REVOKED"
        first[path] = await resp.read()

    # final: the Redis copy gone, the same bytes still (kept), and another tenant still gets a 404
    # worded like an unknown id's
    sync_redis.Redis.from_url(svc.settings.redis_url).delete(keys.task_key(rid))
    unknown = uuid.uuid4().hex
    for path in (f"/tasks/{rid}", f"/runs/{rid}"):
        resp = await c.get(path, headers=acme)
        assert resp.status == 200 and await resp.read() == first[path]
        theirs = await c.get(path, headers=globex)
        other = await c.get(path.replace(rid, unknown), headers=globex)
        assert theirs.status == other.status == 404
        assert (await theirs.text()).replace(rid, unknown) == await other.text()


def test_a_final_record_keeps_the_finishing_attempts_last_progress() -> None:
    """The poll between the worker's commit and its final Redis copy sees the last progress report."""
    from aethera.jobs import records
    from aethera.models import Progress, RunRecord, RunStatus, utc_now_iso

    now = utc_now_iso()
    run = RunRecord(
        run_id="r1",
        task_id="r1",
        project_id="p1",
        project_type="solar",
        params={},
        aoi_source="geojson",
        created_at=now,
        updated_at=now,
        status=RunStatus.PROCESSING,
        attempts=1,
    )
    progress = Progress(step="legal", percent=95.0, message="legal screening", updated_at=now)
    copy = records.task_record(run, progress, max_attempts=3)
    run.status = RunStatus.COMPLETED
    assert records.task_view(copy, run).progress == progress
    run.status, run.attempts = RunStatus.PENDING, 1  # handed back to the queue: no stale progress
    assert records.task_view(copy, run).progress is None
