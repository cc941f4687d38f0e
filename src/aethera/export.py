"""The streaming ZIP export of a run: exact length, random access, constant memory.

A run's outputs never change once it is COMPLETED, and `save_artifact` recorded the size and CRC-32 of
each one when the worker wrote it. That is everything a ZIP needs, so the whole archive is laid out up
front, before a byte is read: every local header, every member's position, the central directory. The
archive is then a list of *segments*, each either inline bytes built once per plan (headers,
`manifest.json`, the central directory) or a slice of a stored object, and any byte range of it can be
served by streaming only the slices that range covers, in chunks of at most `chunk_size` whatever the
segment. That gives an exact `Content-Length`, `Range` requests (resuming a download) and a first byte
as soon as storage answers, with memory bounded by one chunk per download.

Members are stored, not compressed: a deflated member's size is only known after compressing it, which
would mean reading every member twice or keeping a compressed copy. GeoJSON would compress well, but
the download would then cost CPU per request and lose random access; stored members cost bandwidth
only. ZIP64 fields are written only when a size or offset does not fit in 32 bits, and never for the
first member (`manifest.json`, always small), which some unzip tools mishandle.

Every timestamp in the archive is the run's completion time, so the same run always produces the same
bytes, and the ETag (a hash of the member table and layout version) is a strong validator.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
import zlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from aethera.errors import AetheraError, Conflict, NotFound, ObjectNotFound, StorageError, StorageUnavailable
from aethera.keyspace import ID_RE
from aethera.models import RunRecord, RunStatus
from aethera.storage.artifacts import INDEX_NAME, ArtifactIndex, artifact_key
from aethera.storage.base import DEFAULT_CHUNK_BYTES, Storage
from aethera.timestamps import parse_utc

# Bump whenever the bytes produced for the same inputs change (member order, header fields, manifest
# shape): the ETag includes it, so a client never resumes across two layouts.
LAYOUT_VERSION = 1

# A member read that fails transiently part-way is re-opened where it stopped, this many times in a row
# without progress, waiting RESUME_BACKOFF_S x the attempt number in between.
RESUME_ATTEMPTS = 3
RESUME_BACKOFF_S = 0.5

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
AOI_NAME = "aoi.geojson"
RUN_RECORD_NAME = "run.json"
RESULTS_NAME = "results.json"
COMPLETED = "COMPLETED"

# results.json is read at plan time only for the manifest's dataset versions and timings; a results
# document larger than this is not parsed (the manifest says so) rather than held in memory.
MAX_RESULTS_PARSE_BYTES = 32 * 1024 * 1024

_U32_LIMIT = 0xFFFFFFFF  # a 32-bit field holding this value means "see the ZIP64 extra field"
_U16_LIMIT = 0xFFFF
_DOS_EPOCH = datetime(1980, 1, 1, tzinfo=UTC)

# ZIP record signatures and fixed parts (APPNOTE 6.3.x, sections 4.3.7, 4.3.12, 4.3.14-16)
_LOCAL_SIG = 0x04034B50
_CENTRAL_SIG = 0x02014B50
_ZIP64_EOCD_SIG = 0x06064B50
_ZIP64_LOCATOR_SIG = 0x07064B50
_EOCD_SIG = 0x06054B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_EOCD = struct.Struct("<IHHHHIIH")
_VERSION_STORED = 10  # 1.0: stored members
_VERSION_ZIP64 = 45  # 4.5: ZIP64 extensions
_MADE_BY_UNIX = 3 << 8  # external attributes below are Unix mode bits
_FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--
_FLAG_UTF8 = 0x0800
_EXTRA_ZIP64 = 0x0001
_EXTRA_TIMESTAMP = 0x5455  # "UT": Unix mtime, so tools show the right local time


class ExportMember(msgspec.Struct, frozen=True):
    """One file of the archive and what the layout needs to know about it."""

    name: str
    size: int
    crc32: int
    sha256: str
    media_type: str
    key: str | None = None  # storage key of the content; None when `data` holds it
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A contiguous part of the archive: inline bytes or a slice of one stored object."""

    offset: int  # first archive byte of the segment
    length: int
    data: bytes | None = None
    key: str | None = None
    key_offset: int = 0  # first byte of the object the segment starts at

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The complete layout of one run's archive; serving any byte range of it needs only storage."""

    run_id: str
    members: tuple[ExportMember, ...]
    segments: tuple[Segment, ...]
    size: int
    etag: str  # quoted strong entity tag, e.g. '"3f…"'
    modified: datetime  # the run's completion time (UTC), the mtime of every member

    @property
    def filename(self) -> str:
        return f"{self.run_id}_export.zip"


# --- layout --------------------------------------------------------------------------------------


def _dos_datetime(when: datetime) -> tuple[int, int]:
    """(time, date) in MS-DOS format; UTC, because an archive served to anyone has no local zone."""
    when = max(when.astimezone(UTC), _DOS_EPOCH)
    if when.year > 2107:
        when = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)
    dos_time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    dos_date = ((when.year - 1980) << 9) | (when.month << 5) | when.day
    return dos_time, dos_date


def _timestamp_extra(when: datetime) -> bytes:
    seconds = int(when.timestamp())
    if not 0 <= seconds < 1 << 31:  # the field is a signed 32-bit Unix time
        return b""
    return struct.pack("<HHBI", _EXTRA_TIMESTAMP, 5, 1, seconds)


class ZipStamp(msgspec.Struct, frozen=True):
    """The fixed modification time every member of one archive carries, in the forms its records need."""

    dos_time: int
    dos_date: int
    extra: bytes  # the "UT" extra field (empty when the time does not fit it)

    @classmethod
    def of(cls, modified: datetime) -> ZipStamp:
        dos_time, dos_date = _dos_datetime(modified)
        return cls(dos_time=dos_time, dos_date=dos_date, extra=_timestamp_extra(modified))


def local_header(name: str, size: int, crc32: int, stamp: ZipStamp, *, first: bool = False) -> bytes:
    """A member's local file header (with its name and extra fields); its data follows it."""
    encoded = name.encode("utf-8")
    flags = 0 if name.isascii() else _FLAG_UTF8
    big = size >= _U32_LIMIT
    if big and first:
        raise ValueError("the first member must fit in 32 bits")
    if big:
        extra = struct.pack("<HHQQ", _EXTRA_ZIP64, 16, size, size) + stamp.extra
        version, size32 = _VERSION_ZIP64, _U32_LIMIT
    else:
        extra, version, size32 = stamp.extra, _VERSION_STORED, size
    fixed = _LOCAL.pack(
        _LOCAL_SIG, version, flags, 0, stamp.dos_time, stamp.dos_date, crc32, size32, size32, len(encoded), len(extra)
    )
    return fixed + encoded + extra


def local_header_size(name: str, size: int, stamp: ZipStamp) -> int:
    """len(local_header(...)) without building it."""
    return _LOCAL.size + len(name.encode("utf-8")) + len(stamp.extra) + (20 if size >= _U32_LIMIT else 0)


def central_entry(name: str, size: int, crc32: int, header_offset: int, stamp: ZipStamp) -> bytes:
    """A member's central directory entry; `header_offset` is where its local header starts."""
    encoded = name.encode("utf-8")
    flags = 0 if name.isascii() else _FLAG_UTF8
    big = size >= _U32_LIMIT
    far = header_offset >= _U32_LIMIT
    # The central entry's ZIP64 extra holds, in this order, only the fields that overflowed.
    zip64_fields: list[int] = []
    if big:
        zip64_fields += [size, size]
    if far:
        zip64_fields.append(header_offset)
    extra = stamp.extra
    if zip64_fields:
        extra = struct.pack(f"<HH{len(zip64_fields)}Q", _EXTRA_ZIP64, 8 * len(zip64_fields), *zip64_fields) + extra
    version = _VERSION_ZIP64 if zip64_fields else _VERSION_STORED
    size32 = _U32_LIMIT if big else size
    fixed = _CENTRAL.pack(
        _CENTRAL_SIG,
        _MADE_BY_UNIX | version,
        version,
        flags,
        0,
        stamp.dos_time,
        stamp.dos_date,
        crc32,
        size32,
        size32,
        len(encoded),
        len(extra),
        0,
        0,
        0,
        _FILE_MODE,
        _U32_LIMIT if far else header_offset,
    )
    return fixed + encoded + extra


def central_entry_size(name: str, size: int, header_offset: int, stamp: ZipStamp) -> int:
    """len(central_entry(...)) without building it."""
    overflowed = (2 if size >= _U32_LIMIT else 0) + (1 if header_offset >= _U32_LIMIT else 0)
    return _CENTRAL.size + len(name.encode("utf-8")) + len(stamp.extra) + (4 + 8 * overflowed if overflowed else 0)


def directory_tail(count: int, cd_offset: int, cd_size: int) -> bytes:
    """What follows the central directory: ZIP64 end record and locator when needed, then the end record."""
    tail = b""
    if count >= _U16_LIMIT or cd_size >= _U32_LIMIT or cd_offset >= _U32_LIMIT:
        zip64_eocd_offset = cd_offset + cd_size
        tail += _ZIP64_EOCD.pack(
            _ZIP64_EOCD_SIG,
            _ZIP64_EOCD.size - 12,
            _MADE_BY_UNIX | _VERSION_ZIP64,
            _VERSION_ZIP64,
            0,
            0,
            count,
            count,
            cd_size,
            cd_offset,
        )
        tail += _ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_SIG, 0, zip64_eocd_offset, 1)
    tail += _EOCD.pack(
        _EOCD_SIG,
        0,
        0,
        min(count, _U16_LIMIT),
        min(count, _U16_LIMIT),
        min(cd_size, _U32_LIMIT),
        min(cd_offset, _U32_LIMIT),
        0,
    )
    return tail


def layout(members: Sequence[ExportMember], modified: datetime) -> tuple[tuple[Segment, ...], int]:
    """Lay out a stored-method ZIP of `members` (in this order); returns its segments and total size."""
    if not members:
        raise ValueError("an archive needs at least one member")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError("member names must be unique")
    stamp = ZipStamp.of(modified)
    segments: list[Segment] = []
    central: list[bytes] = []
    offset = 0

    def add(data: bytes | None, length: int, key: str | None = None) -> None:
        nonlocal offset
        if length:
            segments.append(Segment(offset=offset, length=length, data=data, key=key))
            offset += length

    for index, member in enumerate(members):
        header_offset = offset
        header = local_header(member.name, member.size, member.crc32, stamp, first=index == 0)
        add(header, len(header))
        if member.data is not None:
            add(member.data, member.size)
        else:
            add(None, member.size, member.key)
        central.append(central_entry(member.name, member.size, member.crc32, header_offset, stamp))

    directory = b"".join(central)
    tail = directory_tail(len(members), offset, len(directory))
    add(directory + tail, len(directory) + len(tail))
    return tuple(segments), offset


# --- streaming -----------------------------------------------------------------------------------


async def iter_archive(
    plan: ExportPlan,
    storage: Storage,
    start: int = 0,
    end: int | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
) -> AsyncGenerator[bytes, None]:
    """The archive's bytes `start` (inclusive) to `end` (exclusive; None = to the end), in chunks.

    Every chunk is at most `chunk_size` bytes, inline segments (headers, the manifest, the central
    directory) included. Stored members are streamed from storage as they are read, one open object
    at a time; closing this generator early (a client that disconnects) closes that object's stream,
    which releases its file handle or S3 connection. A member whose stored length differs from the
    recorded one raises `StorageError` (the response is then cut short, never patched) instead of
    producing an archive that lies about its contents.
    """
    end = plan.size if end is None else min(end, plan.size)
    if start < 0 or start > end:
        raise ValueError("invalid byte range")
    for seg in plan.segments:
        if seg.end <= start or seg.offset >= end:
            continue
        lo = max(start, seg.offset) - seg.offset
        hi = min(end, seg.end) - seg.offset
        if seg.data is not None:
            # in chunks like a stored member: one slice of a large manifest handed to the response at
            # once would sit whole in the transport's buffer of every slow reader
            view = memoryview(seg.data)
            for at in range(lo, hi, chunk_size):
                yield bytes(view[at : min(hi, at + chunk_size)])
            continue
        assert seg.key is not None
        # aclosing: when this generator is closed mid-member, the member's storage stream is closed now,
        # not later by the garbage collector's finaliser (a task of its own, maybe after storage closed)
        async with contextlib.aclosing(
            member_slice(storage, seg.key, seg.key_offset + lo, hi - lo, chunk_size)
        ) as chunks:
            async for chunk in chunks:
                yield chunk


async def member_slice(
    storage: Storage, key: str, offset: int, wanted: int, chunk_size: int
) -> AsyncGenerator[bytes, None]:
    """`wanted` bytes of one stored object from `offset`, exactly.

    A transient storage failure part-way (an S3 connection reset while a slow client held the stream)
    re-opens the object where it stopped, up to `RESUME_ATTEMPTS` times in a row without progress, so a
    long download does not die of one dropped connection. The open stream is closed on every way out.
    """
    sent, failures = 0, 0
    while True:
        chunks = storage.stream(key, chunk_size=chunk_size, start=offset + sent, end=offset + wanted)
        progress_at_open = sent
        try:
            async for chunk in chunks:
                if sent + len(chunk) > wanted:
                    raise StorageError("a stored output of this run is longer than recorded")
                sent += len(chunk)
                yield chunk
            break
        except ObjectNotFound:
            raise StorageError("a stored output of this run has disappeared") from None
        except StorageUnavailable:
            failures = 1 if sent > progress_at_open else failures + 1
            if failures > RESUME_ATTEMPTS:
                raise
            log.warning("export: storage read of %s failed after %d bytes; resuming", key, sent)
            await asyncio.sleep(RESUME_BACKOFF_S * failures)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
    if sent != wanted:
        raise StorageError("a stored output of this run is shorter than recorded")


# --- planning ------------------------------------------------------------------------------------


class PlanCache:
    """Recently built plans, keyed by a fingerprint of everything a plan is derived from.

    A hit still costs reading the run record and artifact index (two small objects) and a stat of the
    AOI, so a rewritten run is never served from a stale plan; what it saves is parsing results.json
    and hashing the AOI for every one of many concurrent downloads of the same run.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._plans: OrderedDict[str, ExportPlan] = OrderedDict()
        self._max = max_entries

    def get(self, fingerprint: str) -> ExportPlan | None:
        plan = self._plans.get(fingerprint)
        if plan is not None:
            self._plans.move_to_end(fingerprint)
        return plan

    def put(self, fingerprint: str, plan: ExportPlan) -> None:
        self._plans[fingerprint] = plan
        self._plans.move_to_end(fingerprint)
        while len(self._plans) > self._max:
            self._plans.popitem(last=False)

    def __len__(self) -> int:
        return len(self._plans)


def completion_time(record: RunRecord) -> datetime:
    """When the run finished: the archive's fixed modification time."""
    return archive_time(record.finished_at, record.updated_at, record.created_at)


def archive_time(*timestamps: str | None) -> datetime:
    """The first of `timestamps` that parses, to the second (a ZIP's member times), else the DOS epoch."""
    for value in timestamps:
        when = parse_utc(value)
        if when is not None:
            return when.astimezone(UTC).replace(microsecond=0)
    return _DOS_EPOCH


async def _read_run_record(storage: Storage, run_id: str) -> tuple[bytes, RunRecord]:
    if not ID_RE.match(run_id):
        raise NotFound("no run with this id")
    try:
        raw = await storage.read(artifact_key(run_id, RUN_RECORD_NAME))
    except ObjectNotFound:
        raise NotFound("no run with this id") from None
    try:
        # the typed record (the worker wrote it from this Struct): a field of the wrong type is caught
        # here, not as a TypeError deep in the layout
        return raw, msgspec.json.decode(raw, type=RunRecord)
    except msgspec.DecodeError:  # ValidationError included
        raise AetheraError("the run record is unreadable") from None


async def _digest_object(storage: Storage, key: str) -> tuple[int, int, str]:
    """(size, CRC-32, SHA-256) of a stored object, read in chunks (never whole in memory)."""
    crc, sha, size = 0, hashlib.sha256(), 0
    chunks = storage.stream(key)
    try:
        async for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            sha.update(chunk)
            size += len(chunk)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    return size, crc & 0xFFFFFFFF, sha.hexdigest()


async def _results_summary(
    storage: Storage, run_id: str, index: ArtifactIndex, generation: int | None
) -> dict[str, Any]:
    """Dataset versions, step timings and warnings from results.json, for the manifest."""
    entry = index.get(RESULTS_NAME)
    if entry is None:
        return {"unavailable_reason": "the run stored no results.json"}
    if entry.size > MAX_RESULTS_PARSE_BYTES:
        return {"unavailable_reason": "results.json is too large to summarise; see the file itself"}
    raw = await storage.read(artifact_key(run_id, RESULTS_NAME, generation))
    decode = msgspec.json.decode
    try:
        results = await asyncio.to_thread(decode, raw) if len(raw) > 1 << 20 else decode(raw)
    except msgspec.DecodeError:
        return {"unavailable_reason": "results.json is not valid JSON"}
    if not isinstance(results, dict):
        return {"unavailable_reason": "results.json is not a JSON object"}
    return {
        "datasets": results.get("datasets"),
        "step_durations_s": results.get("step_durations_s"),
        "warnings": results.get("warnings"),
    }


async def _computed_record(storage: Storage, record: RunRecord) -> RunRecord:
    """The record that describes how the outputs were computed: for a run that reused another run's
    results (`reused_from`), that run's record (parameters, timings, completion time), so the two
    exports are the same bytes apart from the run id; the run's own record otherwise."""
    source_id = record.reused_from
    if not source_id:
        return record
    try:
        _, source = await _read_run_record(storage, source_id)
    except NotFound:
        return record
    return msgspec.structs.replace(source, run_id=record.run_id)


# What the manifest shows of the run record: its parameters and history, not bookkeeping such as the
# queue's job id or the hash of the client's idempotency key.
_RUN_FIELDS = (
    "run_id",
    "project_id",
    "project_type",
    "params",
    "config",
    "aoi_source",
    "status",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
)
_RUN_TIME_FIELDS = ("created_at", "started_at", "finished_at", "updated_at")


def build_manifest(
    run_id: str,
    record: RunRecord,
    members: Iterable[ExportMember],
    summary: Mapping[str, Any],
    missing: Mapping[str, str],
) -> bytes:
    """manifest.json: what the run was asked, which data it used, how long it took, and a checksum of
    every other member. Keys are sorted so the same run always gives the same bytes."""
    fields = msgspec.to_builtins(record)
    manifest = {
        "format": "aethera-run-export",
        "layout_version": LAYOUT_VERSION,
        "run_id": run_id,
        "run": {k: fields[k] for k in _RUN_FIELDS},
        "datasets": summary.get("datasets"),
        "timings": {
            "run": {k: fields[k] for k in _RUN_TIME_FIELDS if fields[k] is not None},
            "step_durations_s": summary.get("step_durations_s"),
        },
        "warnings": summary.get("warnings"),
        "members": [
            {
                "name": m.name,
                "size": m.size,
                "crc32": f"{m.crc32:08x}",
                "sha256": m.sha256,
                "media_type": m.media_type,
            }
            for m in members
        ],
        "not_included": dict(missing),
    }
    if "unavailable_reason" in summary:
        manifest["results_summary_unavailable"] = summary["unavailable_reason"]
    return msgspec.json.format(msgspec.json.encode(manifest, order="sorted"), indent=2) + b"\n"


def _member_order(name: str) -> tuple[int, str]:
    """aoi first, then JSON results, layers, the log, the report, anything else; by name within each."""
    if name == AOI_NAME:
        return 0, name
    if name.endswith(".json") and "/" not in name:
        return 1, name
    if name.startswith("layers/"):
        return 2, name
    if name.endswith(".log"):
        return 3, name
    if name.endswith(".html"):
        return 4, name
    return 5, name


# Outputs every completed run is expected to hold; a missing one is named in the manifest.
EXPECTED_MEMBERS = ("results.json", "legal.json", "run.log", "report.html")


async def plan_export(
    storage: Storage, run_id: str, cache: PlanCache | None = None, *, tenant: str | None = None
) -> ExportPlan:
    """The archive layout of a COMPLETED run.

    Raises `NotFound` for an unknown run (and, identically, for a run of another tenant than `tenant`
    when given) and `Conflict` (with the run's `status`, like every 409 about a run) while it is not COMPLETED.
    """
    record_raw, record = await _read_run_record(storage, run_id)
    # records written before tenants existed belong to models.DEFAULT_TENANT ("default")
    if tenant is not None and record.tenant != tenant:
        raise NotFound("no run with this id")
    status = record.status.value
    if record.status is not RunStatus.COMPLETED:
        raise Conflict(f"the run is {status}; its export exists once it is COMPLETED", status=status)
    # only the committed attempt's outputs: nothing writes under that prefix after the commit
    generation = record.output_generation
    try:
        index_raw = await storage.read(artifact_key(run_id, INDEX_NAME, generation))
    except ObjectNotFound:
        index_raw = b""
    index = msgspec.json.decode(index_raw, type=ArtifactIndex) if index_raw else ArtifactIndex(run_id=run_id)

    aoi_key = artifact_key(run_id, AOI_NAME)
    aoi_stat = None
    if index.get(AOI_NAME) is None:
        try:
            aoi_stat = await storage.stat(aoi_key)
        except ObjectNotFound:
            aoi_stat = None

    fingerprint = hashlib.sha256(
        b"\0".join(
            [
                str(LAYOUT_VERSION).encode(),
                run_id.encode(),
                record_raw,
                index_raw,
                msgspec.json.encode(aoi_stat),
            ]
        )
    ).hexdigest()
    if cache is not None and (plan := cache.get(fingerprint)) is not None:
        return plan

    members: list[ExportMember] = []
    missing: dict[str, str] = {}
    for art in index.artifacts:
        if art.name == MANIFEST_NAME:  # the export writes its own manifest
            continue
        members.append(
            ExportMember(
                name=art.name,
                size=art.size,
                crc32=art.crc32,
                sha256=art.sha256,
                media_type=art.media_type,
                key=artifact_key(run_id, art.name, generation),
            )
        )
    if aoi_stat is not None:
        size, crc, sha = await _digest_object(storage, aoi_key)
        members.append(
            ExportMember(
                name=AOI_NAME, size=size, crc32=crc, sha256=sha, media_type="application/geo+json", key=aoi_key
            )
        )
    elif index.get(AOI_NAME) is None:
        missing[AOI_NAME] = "the run has no stored AOI"
    for name in EXPECTED_MEMBERS:
        if index.get(name) is None:
            missing[name] = "the run did not store this output"
    members.sort(key=lambda m: _member_order(m.name))

    summary = await _results_summary(storage, run_id, index, generation)
    record = await _computed_record(storage, record)
    manifest_bytes = build_manifest(run_id, record, members, summary, missing)
    manifest = ExportMember(
        name=MANIFEST_NAME,
        size=len(manifest_bytes),
        crc32=zlib.crc32(manifest_bytes) & 0xFFFFFFFF,
        sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        media_type="application/json",
        data=manifest_bytes,
    )
    ordered = (manifest, *members)
    modified = completion_time(record)
    segments, size = layout(ordered, modified)
    # The manifest carries every member's checksum and the run record, so hashing it together with the
    # member table and layout version identifies the archive's bytes exactly.
    tag = hashlib.sha256()
    tag.update(f"aethera-export/{LAYOUT_VERSION}/{size}/{modified.isoformat()}\n".encode())
    for m in ordered:
        tag.update(f"{m.name}\0{m.size}\0{m.crc32:08x}\0{m.sha256}\n".encode())
    plan = ExportPlan(
        run_id=run_id,
        members=ordered,
        segments=segments,
        size=size,
        etag=f'"{tag.hexdigest()[:40]}"',
        modified=modified,
    )
    if cache is not None:
        cache.put(fingerprint, plan)
    return plan
