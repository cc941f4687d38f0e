"""The files of a run and their index.

Every output of a run attempt is stored under its own prefix, `runs/{run_id}/attempts/{generation}/`,
through `save_artifact`, which records its size, CRC-32 and SHA-256 in that prefix's `artifacts.json`.
The run record names the one generation whose outputs were committed (`output_generation`); readers
read only that prefix, and nothing writes to it after the commit, so the export can announce an exact
length and stream the ZIP without reading anything twice. (Runs stored before attempts had prefixes
keep their outputs directly under `runs/{run_id}/`: generation None.)

One attempt's prefix is written by that attempt alone (one generation is started once, by the worker
holding the run's lease), so the read-modify-write of the index needs no lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import zlib

import msgspec

from aethera.errors import InvalidKey, ObjectNotFound
from aethera.keyspace import ID_RE
from aethera.storage.base import Storage

INDEX_NAME = "artifacts.json"
# \Z, not $: `$` also matches before a final newline
_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\Z")


class Artifact(msgspec.Struct, frozen=True):
    """One stored output of a run."""

    name: str  # relative to the run, e.g. "results.json" or "layers/natura.geojson"
    size: int
    crc32: int
    sha256: str
    media_type: str


class ArtifactIndex(msgspec.Struct):
    run_id: str
    artifacts: list[Artifact] = msgspec.field(default_factory=list)

    def get(self, name: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.name == name), None)


def run_prefix(run_id: str) -> str:
    if not ID_RE.match(run_id):
        raise InvalidKey("run id must be 32 lowercase hex characters")
    return f"runs/{run_id}/"


def attempt_prefix(run_id: str, generation: int | None) -> str:
    """Where one attempt's outputs live (None: the run's own folder, as before attempts had prefixes)."""
    if generation is None:
        return run_prefix(run_id)
    if not isinstance(generation, int) or generation < 1:
        raise InvalidKey("an attempt generation is a whole number from 1")
    return f"{run_prefix(run_id)}attempts/{generation}/"


def artifact_key(run_id: str, name: str, generation: int | None = None) -> str:
    if not _NAME.match(name) or ".." in name.split("/"):
        raise InvalidKey(f"invalid artifact name {name!r}")
    return attempt_prefix(run_id, generation) + name


def _digest(data: bytes) -> tuple[int, str]:
    return zlib.crc32(data) & 0xFFFFFFFF, hashlib.sha256(data).hexdigest()


async def load_index(storage: Storage, run_id: str, generation: int | None = None) -> ArtifactIndex:
    try:
        raw = await storage.read(artifact_key(run_id, INDEX_NAME, generation))
    except ObjectNotFound:
        return ArtifactIndex(run_id=run_id)
    return msgspec.json.decode(raw, type=ArtifactIndex)


async def store_output(
    storage: Storage, run_id: str, name: str, data: bytes, media_type: str, generation: int | None = None
) -> Artifact:
    """Store one output of a run attempt; returns its index entry, which the caller records with
    `save_index` (once per attempt: the index is read only for a committed attempt)."""
    if name == INDEX_NAME:
        raise InvalidKey("the artifact index is written by save_index")
    key = artifact_key(run_id, name, generation)
    # hashing megabytes holds the loop for milliseconds; zlib and hashlib release the GIL in a thread
    crc, sha = await asyncio.to_thread(_digest, data) if len(data) > 1 << 20 else _digest(data)
    await storage.save(key, data)
    return Artifact(name=name, size=len(data), crc32=crc, sha256=sha, media_type=media_type)


async def save_index(storage: Storage, run_id: str, artifacts: list[Artifact], generation: int | None = None) -> None:
    """Write an attempt's artifact index: every output it stored, in the order stored."""
    index = ArtifactIndex(run_id=run_id, artifacts=list(artifacts))
    await storage.save(artifact_key(run_id, INDEX_NAME, generation), msgspec.json.encode(index))


async def save_artifact(
    storage: Storage, run_id: str, name: str, data: bytes, media_type: str, generation: int | None = None
) -> Artifact:
    """Store one output and record it in that attempt's index at once (replacing an older entry)."""
    entry = await store_output(storage, run_id, name, data, media_type, generation)
    index = await load_index(storage, run_id, generation)
    await save_index(storage, run_id, [a for a in index.artifacts if a.name != name] + [entry], generation)
    return entry
