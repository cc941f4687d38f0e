"""Ownership: every project, run, task, upload and export belongs to one tenant.

Routes load records through these helpers, which answer another tenant's id with exactly the NotFound
(same status, same code, same words) an unknown id gets, so a caller cannot even learn that the id
exists. Runs inherit the tenant of their project when they are created.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from aethera.errors import NotFound
from aethera.jobs import records
from aethera.models import DEFAULT_TENANT, Project, RunRecord
from aethera.security.auth import tenant_of
from aethera.storage.base import Storage


class _Owner(msgspec.Struct):
    """Just the owner of a stored JSON record (msgspec skips every other field)."""

    tenant: str = DEFAULT_TENANT


_owner_decoder = msgspec.json.Decoder(_Owner)


def owner_of(raw_record: bytes) -> str:
    """The tenant a stored JSON record (task, run, project) names, without decoding the rest."""
    return _owner_decoder.decode(raw_record).tenant


async def owned_project(storage: Storage, tenant: str, project_id: str) -> Project:
    project = await records.load_project(storage, project_id)
    if project.tenant != tenant:
        raise NotFound(f"project {project_id} not found")  # the words load_project uses for an unknown id
    return project


async def owned_run(storage: Storage, tenant: str, run_id: str) -> RunRecord:
    run = await records.load_run(storage, run_id)
    if run.tenant != tenant:
        raise NotFound(f"run {run_id} not found")  # the words load_run uses for an unknown id
    return run


async def request_project(request: web.Request, storage: Storage, project_id: str) -> Project:
    """The caller's project, else NotFound."""
    return await owned_project(storage, tenant_of(request), project_id)


async def request_run(request: web.Request, storage: Storage, run_id: str) -> RunRecord:
    """The caller's run, else NotFound."""
    return await owned_run(storage, tenant_of(request), run_id)
