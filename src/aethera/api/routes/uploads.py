"""`POST /uploads`: a tenant's AOI file (GeoJSON, zipped Shapefile, GeoPackage, KML) -> `upload_id`.

The body is multipart with one part named `file`. The file is read in bounded chunks (at most
`AETHERA_MAX_UPLOAD_BYTES`); what it is, is decided by its content (`security.content.identify`), and
a name that promises another format is refused before anything reads it. The whole file must then
load as an AOI (`analysis.aoi.load_aoi`, in a thread, which checks any zip member by member before a
reader opens it and ignores a client's `aethera:*` members) before it is stored. The client's file
name never becomes part of a storage key: the file is stored as `uploads/{upload_id}/aoi.{ext}` beside
its record `uploads/{upload_id}/upload.json`, which names the tenant that owns it. A run takes the id
as `aoi_path`; another tenant's id is answered exactly like an unknown one. With `?purpose=sites` the file
is a batch's many sites instead (`analysis.sites.read_sites`: the same content and archive checks, every
feature read, at most `AETHERA_BATCH_MAX_SITES`); each feature is checked as an AOI when the batch takes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from aethera.api.keys import SETTINGS, STORAGE
from aethera.api.middlewares import body_limit
from aethera.api.responses import json_response
from aethera.errors import (
    AetheraError,
    InvalidAOI,
    InvalidInput,
    MalformedRequest,
    NotFound,
    ObjectNotFound,
    PayloadTooLarge,
)
from aethera.keyspace import upload_file_key, upload_record_key
from aethera.models import utc_now_iso
from aethera.security.archives import ArchiveLimits
from aethera.security.auth import tenant_of
from aethera.security.content import identify
from aethera.security.validation import check_id
from aethera.settings import Settings
from aethera.storage.base import Storage

log = logging.getLogger(__name__)

ROUTE_NAME = "create_upload"
FILE_FIELD = "file"
_READ_CHUNK = 64 * 1024
_DISPLAY_NAME_CHARS = 100


@dataclass(frozen=True)
class Format:
    name: str  # what the answer calls it
    extension: str  # of the stored file; also the filename hint for load_aoi
    media_type: str


FORMATS: dict[str, Format] = {
    ".geojson": Format("geojson", "geojson", "application/geo+json"),
    ".json": Format("geojson", "geojson", "application/geo+json"),
    ".zip": Format("shapefile_zip", "zip", "application/zip"),
    ".gpkg": Format("geopackage", "gpkg", "application/geopackage+sqlite3"),
    ".kml": Format("kml", "kml", "application/vnd.google-earth.kml+xml"),
}


class UploadRecord(msgspec.Struct, kw_only=True):
    """`uploads/{upload_id}/upload.json`: who owns the file and what it is."""

    upload_id: str
    tenant: str
    filename: str  # as the client named it, cleaned for display; never used as a path
    format: str
    media_type: str
    size: int
    sha256: str
    created_at: str
    stored_name: str  # `aoi.{ext}` beside this record


class UploadCreated(msgspec.Struct, kw_only=True):
    """Answer (201) of `POST /uploads` and of `GET /uploads/{upload_id}`."""

    upload_id: str
    aoi_path: str  # what `RunCreate.aoi_path` takes: the upload id itself
    filename: str
    format: str
    size: int
    sha256: str
    created_at: str


def _display_name(raw: str | None) -> str:
    """The client's file name without any directory part or control character, for display only."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    return name.strip()[:_DISPLAY_NAME_CHARS] or "upload"


def _format_of(filename: str) -> Format:
    lower = filename.lower()
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    raise InvalidInput(
        "unsupported file type; upload a .geojson/.json, a zipped Shapefile (.zip), a GeoPackage (.gpkg) or a .kml",
        field=FILE_FIELD,
    )


def _parse_aoi(data: bytes, filename: str, fmt: Format, settings: Settings, limits: ArchiveLimits) -> Any:
    """The upload as an AOI (runs in a thread): its content must be what its name says, then it must load."""
    identify(data, filename)  # cheap, and before any check or reader inflates a byte
    from aethera.analysis.aoi import load_aoi

    try:
        aoi = load_aoi(
            data,
            filename=f"aoi.{fmt.extension}",
            max_area_km2=settings.max_aoi_km2,
            archive_limits=limits,
            client_input=True,
        )
    except AetheraError:
        raise
    except Exception:  # a reader's own exception types (GDAL, JSON, XML): the file is what is wrong
        log.info("upload did not load as an AOI", exc_info=True)
        raise InvalidAOI(f"the file could not be read as a {fmt.name} area of interest") from None
    if fmt.extension == "zip" and aoi.source_format != "shapefile":
        raise InvalidAOI("a .zip upload must hold one zipped Shapefile (.shp with its .shx and .dbf)")
    return aoi


def _parse_sites(data: bytes, filename: str, fmt: Format, settings: Settings, limits: ArchiveLimits) -> None:
    """The upload as a file of many sites (runs in a thread): the same content and archive checks as an AOI,
    then every feature must read (each is checked as an AOI when a batch takes the file)."""
    identify(data, filename)
    from aethera.analysis.sites import read_sites

    try:
        read_sites(data, f"aoi.{fmt.extension}", limits=limits, max_features=settings.batch_max_sites)
    except AetheraError:
        raise
    except Exception:  # a reader's own exception types (GDAL, JSON, XML): the file is what is wrong
        log.info("upload did not read as sites", exc_info=True)
        raise InvalidAOI(f"the file could not be read as a {fmt.name} file of sites") from None


def _purpose(request: web.Request) -> str:
    purpose = request.query.get("purpose", "aoi")
    if purpose not in ("aoi", "sites"):
        raise InvalidInput("purpose is aoi (one area, the default) or sites (many sites for a batch)", field="purpose")
    return purpose


class _BoundedBody:
    """The request body as the multipart reader sees it, refused once more than `limit` bytes were read.

    A chunked body declares no length for the body-limit middleware to check, and aiohttp skips what
    precedes the first boundary line by line without any limit; counting here bounds the whole body.
    """

    def __init__(self, content: StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self._read = 0

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            raise PayloadTooLarge(f"request body larger than {self._limit} bytes", limit_bytes=self._limit)
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._count(await self._content.read(n))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return self._count(await self._content.readline(max_line_length=max_line_length))

    def unread_data(self, data: bytes) -> None:
        self._read -= len(data)  # given back: read again later, and counted then
        self._content.unread_data(data)

    def at_eof(self) -> bool:
        return self._content.at_eof()


async def _read_file_part(request: web.Request, limit: int) -> tuple[str, bytes]:
    if request.content_type != "multipart/form-data":
        raise MalformedRequest(f"send multipart/form-data with one part named '{FILE_FIELD}'")
    try:
        body = _BoundedBody(request.content, body_limit(request))
        reader = MultipartReader(request.headers, body)  # type: ignore[arg-type]
        filename: str | None = None
        data: bytes | None = None
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or part.name != FILE_FIELD or data is not None:
                raise MalformedRequest(f"the body must hold exactly one part, named '{FILE_FIELD}'")
            filename = part.filename
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(_READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the file is larger than {limit} bytes", limit_bytes=limit)
                chunks.append(chunk)
            data = b"".join(chunks)
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:  # broken multipart
        raise MalformedRequest(f"the multipart body is malformed ({type(exc).__name__})") from None
    if data is None:
        raise MalformedRequest(f"the body holds no part named '{FILE_FIELD}'")
    if not data:
        raise InvalidInput("the uploaded file is empty", field=FILE_FIELD)
    return _display_name(filename), data


async def create_upload(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    settings = request.app[SETTINGS]
    storage = request.app[STORAGE]
    purpose = _purpose(request)
    filename, data = await _read_file_part(request, settings.max_upload_bytes)
    fmt = _format_of(filename)
    limits = ArchiveLimits.from_settings(settings)
    check = _parse_sites if purpose == "sites" else _parse_aoi
    await asyncio.to_thread(check, data, filename, fmt, settings, limits)
    sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())

    upload_id = uuid.uuid4().hex
    record = UploadRecord(
        upload_id=upload_id,
        tenant=tenant,
        filename=filename,
        format=fmt.name,
        media_type=fmt.media_type,
        size=len(data),
        sha256=sha256,
        created_at=utc_now_iso(),
        stored_name=f"aoi.{fmt.extension}",
    )
    # the file first, its record last: a record always names a file that exists
    await storage.save(upload_file_key(upload_id, record.stored_name), data)
    await storage.save(upload_record_key(upload_id), msgspec.json.encode(record))
    resp = json_response(_answer(record), status=201)
    resp.headers["Location"] = f"/uploads/{upload_id}"
    return resp


async def get_upload(request: web.Request) -> web.Response:
    upload_id = check_id(request.match_info.get("upload_id", ""), "upload")
    record = await load_upload_record(request.app[STORAGE], tenant_of(request), upload_id)
    return json_response(_answer(record))


def _answer(record: UploadRecord) -> UploadCreated:
    return UploadCreated(
        upload_id=record.upload_id,
        aoi_path=record.upload_id,
        filename=record.filename,
        format=record.format,
        size=record.size,
        sha256=record.sha256,
        created_at=record.created_at,
    )


async def load_upload_record(storage: Storage, tenant: str, upload_id: str) -> UploadRecord:
    """The tenant's upload; NotFound for an unknown id and, identically, for another tenant's."""
    check_id(upload_id, "upload")
    try:
        raw = await storage.read(upload_record_key(upload_id))
    except ObjectNotFound:
        raise NotFound("upload not found") from None
    record = msgspec.json.decode(raw, type=UploadRecord)
    if record.tenant != tenant:
        raise NotFound("upload not found")
    return record


async def load_upload(storage: Storage, tenant: str, upload_id: str) -> tuple[bytes, str]:
    """The bytes of the tenant's uploaded AOI and the file name to hand `load_aoi` as its hint."""
    record = await load_upload_record(storage, tenant, upload_id)
    try:
        data = await storage.read(upload_file_key(upload_id, record.stored_name))
    except ObjectNotFound:
        raise NotFound("upload not found") from None
    return data, record.stored_name


def add_routes(app: web.Application) -> None:
    app.router.add_post("/uploads", create_upload, name=ROUTE_NAME)
    app.router.add_get("/uploads/{upload_id}", get_upload, name="get_upload")
