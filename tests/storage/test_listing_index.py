"""Listing pages from the per-tenant indexes (jobs/listings.py) on both real backends: what a page costs
in storage calls, records stored before the indexes, and markers whose record never came."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import msgspec

from aethera import keyspace as keys
from aethera.jobs import listings, records
from aethera.models import Project, RunRecord, RunStatus, utc_now_iso
from aethera.storage.base import Storage

T0_MS = 1_780_000_000_000  # a fixed creation time: names (and so the order) do not depend on the clock


class CountingStorage:
    """The real adapter, with every call counted by method name (what a page costs, not a mock)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def run_record(tenant: str, project_id: str) -> RunRecord:
    created = utc_now_iso()
    run_id = uuid.uuid4().hex
    return RunRecord(
        run_id=run_id,
        task_id=run_id,
        project_id=project_id,
        project_type="solar",
        params={},
        config={},
        aoi_source="geojson",
        aoi_path=None,
        created_at=created,
        updated_at=created,
        status=RunStatus.PENDING,
        attempts=0,
        job_id=f"{run_id}:1",
        tenant=tenant,
    )


async def create_runs(storage: Storage, tenant: str, project_id: str, n: int, first_ms: int = T0_MS) -> list[str]:
    """`n` runs created one millisecond apart through the one create path; ids newest first."""
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        run = run_record(tenant, project_id)
        async with gate:
            await records.create_run(storage, run, b"{}", first_ms + i)
        return run.run_id

    ids = await asyncio.gather(*(one(i) for i in range(n)))
    return ids[::-1]


async def all_pages(storage: Storage, tenant: str, limit: int, project_id: str | None = None) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        runs, cursor = await listings.list_runs(
            storage, tenant=tenant, project_id=project_id, limit=limit, cursor=cursor
        )
        seen += [r.run_id for r in runs]
        if cursor is None:
            return seen


async def test_a_page_costs_the_same_storage_calls_however_many_runs_exist(storage: Storage) -> None:
    counting = CountingStorage(storage)
    project = uuid.uuid4().hex
    small = await create_runs(storage, "acme", project, 12)
    await listings.ensure_migrated(counting)  # the one-off pass of a fresh store, not a page's cost

    async def cost(limit: int, cursor: str | None) -> tuple[Counter[str], list[str], str | None]:
        counting.calls.clear()
        runs, next_cursor = await listings.list_runs(
            counting, tenant="acme", project_id=None, limit=limit, cursor=cursor
        )
        return Counter(counting.calls), [r.run_id for r in runs], next_cursor

    first_small, ids, _ = await cost(5, None)
    assert ids == small[:5]
    # many more runs, older than the first ones (so the deep page below lies among them)
    big = small + await create_runs(storage, "acme", project, 150, first_ms=T0_MS - 10_000)
    first_big, ids, cursor = await cost(5, None)
    assert ids == big[:5] and first_big == first_small == Counter(list_page=1, read=5)
    for _ in range(25):  # walk deep: each page its own single LIST from the cursor
        _, _, cursor = await cost(5, cursor)
    deep, ids, _ = await cost(5, cursor)
    assert ids == big[130:135] and deep == Counter(list_page=1, read=5)
    # the last page knows it is the last without another call
    tail, ids, nxt = await cost(5, keys.run_index_name(T0_MS - 10_000 + 2, big[-3]))
    assert ids == big[-2:] and nxt is None and tail == Counter(list_page=1, read=2)


async def test_pages_are_stable_while_runs_are_created(storage: Storage) -> None:
    project = uuid.uuid4().hex
    existing = await create_runs(storage, "acme", project, 40)
    seen: list[str] = []
    cursor = None
    page_no = 0
    while True:
        runs, cursor = await listings.list_runs(storage, tenant="acme", project_id=None, limit=7, cursor=cursor)
        seen += [r.run_id for r in runs]
        page_no += 1
        # between pages, newer runs arrive (they sort before the cursor: never on a later page)
        await create_runs(storage, "acme", project, 3, first_ms=T0_MS + 1000 * page_no)
        if cursor is None:
            break
    assert seen == existing  # nothing repeated, nothing skipped, in order
    everything = await all_pages(storage, "acme", 50)
    assert len(everything) == len(set(everything)) == 40 + 3 * page_no


async def test_tenants_and_projects_list_only_their_own(storage: Storage) -> None:
    p_acme, p_globex = uuid.uuid4().hex, uuid.uuid4().hex
    acme = await create_runs(storage, "acme", p_acme, 6)
    globex = await create_runs(storage, "globex", p_globex, 4, first_ms=T0_MS + 3)  # interleaved in time
    assert await all_pages(storage, "acme", 4) == acme
    assert await all_pages(storage, "globex", 3) == globex
    assert await all_pages(storage, "acme", 2, project_id=p_acme) == acme
    # a project id of another tenant lists nothing for the caller, even asked directly
    assert await all_pages(storage, "acme", 10, project_id=p_globex) == []
    for tenant in ("acme", "globex"):
        await records.create_project(
            storage, Project(id=uuid.uuid4().hex, name=tenant, created_at=utc_now_iso(), tenant=tenant)
        )
    projects, _ = await listings.list_projects(storage, tenant="acme", limit=10, cursor=None)
    assert [p.name for p in projects] == ["acme"]


async def test_a_marker_without_its_record_is_skipped_then_dropped(storage: Storage) -> None:
    project = uuid.uuid4().hex
    ids = await create_runs(storage, "acme", project, 3)
    now_ms = int(time.time() * 1000)
    fresh = keys.run_index_name(now_ms, uuid.uuid4().hex)  # a create in flight: its record comes next
    old = keys.run_index_name(T0_MS + 1000, uuid.uuid4().hex)  # a create that crashed long ago
    for name in (fresh, old):
        await storage.save(keys.tenant_runs_index("acme") + name, b"")
    runs, cursor = await listings.list_runs(storage, tenant="acme", project_id=None, limit=3, cursor=None)
    # the page is 3 names long; the two without a record are not shown, and it is no error
    assert [r.run_id for r in runs] == ids[:1] and cursor is not None
    assert await all_pages(storage, "acme", 2) == ids
    assert await storage.exists(keys.tenant_runs_index("acme") + fresh)
    assert not await storage.exists(keys.tenant_runs_index("acme") + old)


async def test_records_stored_before_the_indexes_are_listed(storage: Storage) -> None:
    # the old layout: project records with no marker, a run with only its all-runs marker, a run with none
    projects = [
        Project(id=uuid.uuid4().hex, name=f"old {i}", created_at=f"2025-0{i + 1}-01T00:00:00.000+00:00", tenant="acme")
        for i in range(3)
    ]
    for p in projects:
        await storage.save(keys.project_key(p.id), msgspec.json.encode(p))
    theirs = Project(id=uuid.uuid4().hex, name="theirs", created_at=utc_now_iso(), tenant="globex")
    await storage.save(keys.project_key(theirs.id), msgspec.json.encode(theirs))
    half, bare = run_record("acme", projects[0].id), run_record("acme", projects[0].id)
    half_name = keys.run_index_name(T0_MS, half.run_id)
    await storage.save(keys.ALL_RUNS_INDEX + half_name, b"")
    for run in (half, bare):
        await storage.save(keys.run_record_key(run.run_id), msgspec.json.encode(run))
    # and one run created by this version, which has every marker already
    new = await create_runs(storage, "acme", projects[0].id, 1, first_ms=T0_MS - 5)

    counting = CountingStorage(storage)
    listed, _ = await listings.list_projects(counting, tenant="acme", limit=10, cursor=None)
    assert [p.id for p in listed] == [p.id for p in reversed(projects)]
    assert await storage.exists(keys.LISTINGS_MIGRATED)
    runs = await all_pages(counting, "acme", 10)
    assert sorted(runs) == sorted([half.run_id, bare.run_id, *new]) and len(runs) == 3
    assert runs.index(half.run_id) < runs.index(new[0])  # `half` kept its name (and so its place)
    counting.calls.clear()
    await listings.list_projects(counting, tenant="acme", limit=10, cursor=None)
    assert counting.calls["exists"] == 0 and counting.calls["list"] == 0  # migrated once per process

    again = await listings.migrate(storage)  # idempotent: a second pass finds nothing to write
    assert (again.projects_seen, again.runs_seen, again.markers_written) == (4, 3, 0)


def test_the_migrate_listings_command_is_idempotent(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    from aethera.cli import main

    root = tmp_path / "root"
    old = Project(id=uuid.uuid4().hex, name="old", created_at="2025-01-01T00:00:00.000+00:00", tenant="acme")
    (root / "projects").mkdir(parents=True)
    (root / keys.project_key(old.id)).write_bytes(msgspec.json.encode(old))
    monkeypatch.setenv("STORAGE_BACKEND", "local")
    monkeypatch.setenv("STORAGE_BASE_PATH", str(root))
    assert main(["migrate-listings"]) == 0
    first = msgspec.json.decode(capsys.readouterr().out)
    assert (first["projects_indexed"], first["markers_written"]) == (1, 1)
    assert (root / (keys.tenant_projects_index("acme") + keys.run_index_name(1735689600000, old.id))).exists()
    assert main(["migrate-listings"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out)["markers_written"] == 0
