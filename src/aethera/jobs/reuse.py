"""Result reuse: a run's content key, and finding a COMPLETED run with the same key to reuse.

A run's results depend on: the AOI, the validated parameters (project type, country and the effective
config after defaults: `RunRecord.params`), the data layers it reads, and the code and reference files
that turn those into results. The content key is a SHA-256 over all of them:

- the AOI in a canonical form: EPSG:4326, coordinates snapped to 1e-7 degree (about 1 cm), normalised
  by GEOS (fixed ring orientation and start vertex, parts and holes in a fixed order), as WKB; plus the
  repairs the service made to it (they are part of the results);
- the params exactly as the API stores them in the run record;
- a fingerprint of every source of every catalog layer: size and mtime (ns) of a local file and of the
  files beside it that make up its content (a Shapefile's .shx, .dbf, .prj, .cpg; every file of a
  directory dataset; not GDAL's .aux.xml or SQLite's -wal/-shm, which readers write), the ETag of an
  `s3://` object, the ETag or Last-Modified and length of an `https://` one; plus the catalog file's
  own bytes (titles, columns and codes it configures);
- the service version, `KEY_VERSION` (bumped when the analysis changes its results for the same
  inputs), and the bytes of every reference file of the package: emission factors, KPI coefficients,
  index weights, Annex III and the legal rule packs.

Change any of them and the key changes. The key is computed by the API when it creates the run and
stored in the record; the worker that commits a run COMPLETED then writes the index entry
`index/reuse/{tenant}/{key}` -> run id (and `index/reuse-any/{key}` for cross-tenant reuse, off unless
`AETHERA_REUSE_CROSS_TENANT`). A new run whose key finds a COMPLETED run gets a *copy* of that run's
committed outputs under its own `attempts/1/` prefix before its record is created COMPLETED (see
`copy_outputs`): a COMPLETED record therefore always names a generation whose files exist and never
change, and every reader works on a reused run exactly as on a computed one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import shapely

import aethera
from aethera import keyspace as keys
from aethera.errors import AetheraError, NotFound, ObjectNotFound
from aethera.jobs import records
from aethera.models import RunRecord, RunStatus
from aethera.storage.artifacts import INDEX_NAME, ArtifactIndex, artifact_key
from aethera.storage.base import Storage

log = logging.getLogger(__name__)

# Bump when the analysis produces other results for the same inputs (a new step, a fixed formula):
# every earlier key then stops matching.
KEY_VERSION = 1
AOI_GRID_DEG = 1e-7
# the reference files whose bytes the results depend on, relative to the aethera package
_REFERENCE_GLOBS = ("analysis/*.toml", "analysis/data/*.toml", "legal/*.toml", "legal/packs/*.toml")
_PACKAGE_ROOT = Path(aethera.__file__).parent


class ReuseEntry(msgspec.Struct, kw_only=True):
    """`index/reuse/{tenant}/{key}.json`: the COMPLETED run that holds the results of a content key."""

    run_id: str
    tenant: str
    content_key: str


_entry_decoder = msgspec.json.Decoder(ReuseEntry)


# --- the key ---------------------------------------------------------------------------------------


def canonical_aoi(aoi: Any) -> bytes:
    """The AOI's geometry as canonical WKB in EPSG:4326 (two spellings of one polygon give one value)."""
    geom = shapely.set_precision(aoi.wgs84, AOI_GRID_DEG)
    geom = shapely.normalize(geom)
    wkb: bytes = shapely.to_wkb(geom, hex=False, byte_order=1, output_dimension=2)
    return wkb


# files readers write beside a dataset while reading it (GDAL's statistics, SQLite's journal): not content
_READER_DEBRIS = (".aux.xml", "-wal", "-shm", "-journal", ".lock")
_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")


def _local_fingerprint(path: str) -> list[Any]:
    p = Path(path)
    if p.is_dir():  # a directory dataset (FileGDB): every file of it
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.endswith(_READER_DEBRIS))
    elif p.exists():
        sidecars = [p.with_suffix(ext) for ext in _SHAPEFILE_SIDECARS] if p.suffix.lower() == ".shp" else []
        files = [p, *(f for f in sidecars if f.is_file())]
    else:
        return [p.name, None]
    out: list[Any] = []
    for f in files:
        st = f.stat()
        out.append([f.name, st.st_size, st.st_mtime_ns])
    return out


def _s3_fingerprint(bucket_key: str) -> list[Any]:
    """The object's ETag, asked with the settings GDAL itself reads the object with (AWS_* variables)."""
    import boto3

    bucket, _, key = bucket_key.partition("/")
    endpoint = os.environ.get("AWS_S3_ENDPOINT")
    url = None
    if endpoint:
        scheme = "http" if os.environ.get("AWS_HTTPS", "YES").upper() in ("NO", "FALSE", "OFF") else "https"
        url = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
    client = boto3.client("s3", endpoint_url=url, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    head = client.head_object(Bucket=bucket, Key=key)
    return [head.get("ETag"), head.get("ContentLength")]


def _http_fingerprint(url: str) -> list[Any]:
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        h = resp.headers
        return [h.get("ETag"), h.get("Last-Modified"), h.get("Content-Length")]


def source_fingerprint(path: str) -> list[Any]:
    """What identifies the current content of one layer source (see the module docstring)."""
    try:
        if path.startswith("/vsis3/"):
            return ["s3", *_s3_fingerprint(path[len("/vsis3/") :])]
        if path.startswith("/vsicurl/"):
            return ["http", *_http_fingerprint(path[len("/vsicurl/") :])]
        if path.startswith("/vsi"):
            return ["vsi", path]
        return ["file", *_local_fingerprint(path)]
    except Exception as exc:
        # a key that matches nothing: the run is computed (and fails there if the source is really gone)
        log.info("layer source not fingerprinted (%s); no reuse for this run", type(exc).__name__)
        return ["unknown", os.urandom(16).hex()]


def catalog_fingerprint(catalog: Any) -> list[Any]:
    out: list[Any] = []
    try:
        out.append(hashlib.sha256(Path(catalog.path).read_bytes()).hexdigest())
    except OSError:
        out.append(None)
    for layer in sorted(catalog.layers):
        for source in catalog.layers[layer]:
            out.append([layer, source.display, source.sublayer, source.band, source_fingerprint(source.path)])
    return out


def code_fingerprint() -> list[Any]:
    """The service version, the key version and the bytes of every reference file of the package."""
    out: list[Any] = [aethera.__version__, KEY_VERSION]
    for pattern in _REFERENCE_GLOBS:
        for f in sorted(_PACKAGE_ROOT.glob(pattern)):
            out.append([str(f.relative_to(_PACKAGE_ROOT)), hashlib.sha256(f.read_bytes()).hexdigest()])
    return out


def key_context(catalog: Any) -> dict[str, Any]:
    """What every run's key shares at one moment: the data and code fingerprints (a batch takes them
    once for all its sites)."""
    return {"catalog": catalog_fingerprint(catalog), "code": code_fingerprint()}


def content_key(*, aoi: Any, params: dict[str, Any], catalog: Any = None, context: dict[str, Any] | None = None) -> str:
    """The content key of a run (blocking: file stats and hashing; call it in a thread)."""
    parts = {
        "aoi": canonical_aoi(aoi).hex(),
        "repairs": list(getattr(aoi, "repairs", ())),
        "params": msgspec.to_builtins(params, str_keys=True),  # CORINE codes are int keys
        **(context if context is not None else key_context(catalog)),
    }
    return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).hexdigest()


# --- the index -------------------------------------------------------------------------------------


def tenant_index_key(tenant: str, key: str) -> str:
    return f"index/reuse/{tenant}/{key}.json"


def any_index_key(key: str) -> str:
    return f"index/reuse-any/{key}.json"


async def record_completed(storage: Storage, run: RunRecord) -> None:
    """Index a run just committed COMPLETED under its content key (best effort: a missing entry only
    costs a recomputation). Called by whoever commits the run, after the commit."""
    if run.status is not RunStatus.COMPLETED or run.content_key is None or run.reused_from is not None:
        return
    entry = msgspec.json.encode(ReuseEntry(run_id=run.run_id, tenant=run.tenant, content_key=run.content_key))
    try:
        await storage.save(tenant_index_key(run.tenant, run.content_key), entry)
        await storage.save(any_index_key(run.content_key), entry)
    except AetheraError as exc:
        log.warning("run %s: reuse index not written (%s)", run.run_id, exc.code)


async def find_reusable(storage: Storage, *, tenant: str, key: str, cross_tenant: bool) -> RunRecord | None:
    """A COMPLETED run with this content key the tenant may reuse, or None."""
    index_keys = [tenant_index_key(tenant, key)] + ([any_index_key(key)] if cross_tenant else [])
    for index_key in index_keys:
        try:
            entry = _entry_decoder.decode(await storage.read(index_key))
        except ObjectNotFound:
            continue
        except msgspec.DecodeError:
            continue
        if not keys.ID_RE.match(entry.run_id):
            continue
        try:
            run = await records.load_run(storage, entry.run_id)
        except NotFound:
            continue
        # checked against the record itself: the index is only a pointer
        if (
            run.status is RunStatus.COMPLETED
            and run.content_key == key
            and run.output_generation is not None
            and (run.tenant == tenant or cross_tenant)
        ):
            return run
    return None


async def copy_outputs(storage: Storage, source: RunRecord, run_id: str, generation: int = 1) -> None:
    """Copy the committed outputs of `source` (and its stored AOI) to `run_id`'s attempt `generation`.

    The artifact index is written last, so a copy cut short leaves no index naming missing files (and
    the caller then creates no COMPLETED record)."""
    raw_index = await storage.read(artifact_key(source.run_id, INDEX_NAME, source.output_generation))
    index = msgspec.json.decode(raw_index, type=ArtifactIndex)
    sem = asyncio.Semaphore(8)

    async def one(name: str) -> None:
        async with sem:
            # streamed: a large layer is never whole in memory
            await storage.save(
                artifact_key(run_id, name, generation),
                storage.stream(artifact_key(source.run_id, name, source.output_generation)),
            )

    await asyncio.gather(*(one(a.name) for a in index.artifacts))
    index.run_id = run_id
    await storage.save(artifact_key(run_id, INDEX_NAME, generation), msgspec.json.encode(index))
