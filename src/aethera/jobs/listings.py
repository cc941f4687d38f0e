"""Listing pages of projects and runs from per-tenant index markers: a page costs O(page), not O(bucket).

An index is a prefix of empty marker objects named `{inverted ms}-{id}` (`keys.run_index_name`), so
key order is the listing order, newest first: a page is one `Storage.list_page` call starting after the
cursor, then one read per listed record. The markers are written before their record (see
`records.create_run` / `create_project`), so a record is never missed; a marker whose record is missing
is skipped, and deleted once it is older than any create could take. Records stored before the indexes
existed get their markers from `migrate()`, run by the `aethera migrate-listings` command or, when its
done marker is absent, by the first listing a process serves. See docs/architecture.md, "Listings and
their index".
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TypeVar

import msgspec

from aethera import keyspace as keys
from aethera.errors import ObjectNotFound, StorageError
from aethera.models import Project, RunRecord, utc_now_iso
from aethera.storage.base import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")

# A marker this old whose record is missing is left by a create that failed or crashed, not one in
# flight: a create's storage calls are each bounded by AETHERA_BACKEND_DEADLINE_S (seconds).
DANGLING_GRACE_S = 600
_READS_AT_ONCE = 16

_run_decoder = msgspec.json.Decoder(RunRecord)
_project_decoder = msgspec.json.Decoder(Project)
_RUN_INDEXES = ("index/runs/", "index/tenant-runs/", "index/project-runs/")


def created_ms_of(created_at: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 timestamp as `utc_now_iso` writes it."""
    return int(datetime.fromisoformat(created_at).timestamp() * 1000)


def project_marker(project: Project) -> str:
    name = keys.run_index_name(created_ms_of(project.created_at), project.id)
    return keys.tenant_projects_index(project.tenant) + name


def run_markers(run: RunRecord, name: str) -> list[str]:
    """The run's marker in each index that lists it, all under one name."""
    return [
        keys.ALL_RUNS_INDEX + name,
        keys.tenant_runs_index(run.tenant) + name,
        keys.project_runs_index(run.project_id) + name,
    ]


async def write_markers(storage: Storage, markers: Iterable[str]) -> None:
    await asyncio.gather(*(storage.save(key, b"") for key in markers))


async def drop_markers(storage: Storage, markers: Iterable[str]) -> None:
    """Best effort (a create that failed): a marker left behind is skipped, then dropped by a listing."""
    for key in markers:
        try:
            await storage.delete(key)
        except StorageError:
            pass


# --- pages ---------------------------------------------------------------------------------------


async def list_runs(
    storage: Storage, *, tenant: str, project_id: str | None, limit: int, cursor: str | None
) -> tuple[list[RunRecord], str | None]:
    """One page of the tenant's runs (of one project, when given), newest first, and the next cursor."""
    prefix = keys.project_runs_index(project_id) if project_id else keys.tenant_runs_index(tenant)
    runs, next_cursor = await _page(
        storage, prefix, limit, cursor, lambda name: keys.run_record_key(name[14:]), _run_decoder.decode
    )
    return [r for r in runs if r.tenant == tenant], next_cursor


async def list_projects(
    storage: Storage, *, tenant: str, limit: int, cursor: str | None
) -> tuple[list[Project], str | None]:
    """One page of the tenant's projects, newest first, and the next cursor."""
    projects, next_cursor = await _page(
        storage,
        keys.tenant_projects_index(tenant),
        limit,
        cursor,
        lambda name: keys.project_key(name[14:]),
        _project_decoder.decode,
    )
    return [p for p in projects if p.tenant == tenant], next_cursor


async def _page(
    storage: Storage,
    prefix: str,
    limit: int,
    cursor: str | None,
    record_key: Callable[[str], str],
    decode: Callable[[bytes], T],
) -> tuple[list[T], str | None]:
    await ensure_migrated(storage)
    # one more than the page: whether a next page exists, without a second call
    stats = await storage.list_page(prefix, start_after=prefix + cursor if cursor else None, limit=limit + 1)
    more = len(stats) > limit
    names = [name for stat in stats[:limit] if keys.RUN_INDEX_NAME_RE.match(name := stat.key[len(prefix) :])]
    raws = await read_all(storage, [record_key(name) for name in names])
    items: list[T] = []
    dangling: list[str] = []
    for name, raw in zip(names, raws, strict=True):
        if raw is not None:
            items.append(decode(raw))
        elif _older_than_any_create(name):
            dangling.append(prefix + name)
    if dangling:
        log.info("listing: dropping %d index marker(s) whose record was never written", len(dangling))
        await drop_markers(storage, dangling)
    return items, (names[-1] if more and names else None)


def _older_than_any_create(name: str) -> bool:
    return keys.index_name_ms(name) < (time.time() - DANGLING_GRACE_S) * 1000


async def read_all(storage: Storage, record_keys: list[str]) -> list[bytes | None]:
    """Each object's bytes (None where it is missing), a bounded number of reads at a time."""

    async def one(key: str) -> bytes | None:
        try:
            return await storage.read(key)
        except ObjectNotFound:
            return None

    return await _bounded_gather(one(k) for k in record_keys)


async def _bounded_gather(coros: Iterable[Awaitable[T]], limit: int = _READS_AT_ONCE) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[T]) -> T:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


# --- records stored before the indexes -----------------------------------------------------------


class MigrationReport(msgspec.Struct):
    """What one pass of `migrate()` did (the body of the done marker, and the CLI's answer)."""

    projects_seen: int = 0
    projects_indexed: int = 0
    runs_seen: int = 0
    runs_indexed: int = 0
    markers_written: int = 0
    unreadable: int = 0  # records that did not decode: left unlisted, and named in the log
    finished_at: str | None = None


async def migrate(storage: Storage) -> MigrationReport:
    """Write every missing listing marker of the records in storage, then the done marker.

    Idempotent and resumable: a marker's name comes from its record (a run keeps the name any of its
    markers has), so a second pass writes nothing new, and a pass cut short is simply run again.
    O(bucket), once: it walks `index/`, `projects/` and `runs/`."""
    report = MigrationReport()
    present: set[str] = set()
    run_names: dict[str, str] = {}
    async for stat in storage.list("index/"):
        present.add(stat.key)
        name = stat.key.rsplit("/", 1)[-1]
        if stat.key.startswith(_RUN_INDEXES) and keys.RUN_INDEX_NAME_RE.match(name):
            run_names.setdefault(name[14:], name)

    project_keys = [
        s.key async for s in storage.list(keys.PROJECTS_PREFIX) if s.key.count("/") == 1 and s.key.endswith(".json")
    ]
    run_keys = [s.key async for s in storage.list("runs/") if s.key.count("/") == 2 and s.key.endswith("/run.json")]
    missing: list[str] = []
    for raw in await read_all(storage, project_keys):
        if raw is None:
            continue
        report.projects_seen += 1
        try:
            marker = project_marker(_project_decoder.decode(raw))
        except (msgspec.DecodeError, ValueError):
            log.warning("listing migration: a project record does not decode; left unlisted")
            report.unreadable += 1
            continue
        if marker not in present:
            report.projects_indexed += 1
            missing.append(marker)
    for key, raw in zip(run_keys, await read_all(storage, run_keys), strict=True):
        if raw is None:
            continue
        report.runs_seen += 1
        try:
            run = _run_decoder.decode(raw)
            name = run_names.get(run.run_id) or keys.run_index_name(created_ms_of(run.created_at), run.run_id)
        except (msgspec.DecodeError, ValueError):
            log.warning("listing migration: %s does not decode; left unlisted", key)
            report.unreadable += 1
            continue
        absent = [m for m in run_markers(run, name) if m not in present]
        if absent:
            report.runs_indexed += 1
            missing.extend(absent)
    await _bounded_gather(storage.save(m, b"") for m in missing)
    report.markers_written = len(missing)
    report.finished_at = utc_now_iso()
    await storage.save(keys.LISTINGS_MIGRATED, msgspec.json.encode(report))
    return report


# one pass per storage object of this process; concurrent first listings share it
_migrations: weakref.WeakKeyDictionary[Storage, asyncio.Future[None]] = weakref.WeakKeyDictionary()


async def ensure_migrated(storage: Storage) -> None:
    """Run `migrate()` unless its done marker exists; after the first success, free (no storage call)."""
    done = _migrations.get(storage)
    if done is None or (done.done() and (done.cancelled() or done.exception() is not None)):
        done = asyncio.ensure_future(_migrate_unless_done(storage))
        # retrieved here: a failed pass whose waiters all gave up is no "never retrieved" error
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        _migrations[storage] = done
    # shielded: a request that gives up must not cancel the pass other requests wait on
    await asyncio.shield(done)


async def _migrate_unless_done(storage: Storage) -> None:
    if await storage.exists(keys.LISTINGS_MIGRATED):
        return
    report = await migrate(storage)
    log.info(
        "listing migration: %d project(s) and %d run(s) indexed (%d markers)",
        report.projects_indexed,
        report.runs_indexed,
        report.markers_written,
    )
