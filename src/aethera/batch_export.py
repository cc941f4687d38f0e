"""The batch export's archive, laid out in a temporary SQLite file instead of in memory.

A batch of 10,000 sites has ~100,000 members. What the ZIP needs of each (name, size, CRC-32, where
its bytes come from, its offset) and each site's summary row are written to a SQLite database in a
temporary directory, page by page, as the sites are read; `summary.csv` and `summary.geojson` are
written to files beside it, in rank order (SQLite sorts the rows). Then one pass over the members
gives every local header's and central entry's offset, the archive's exact size and its ETag. Serving
any byte range reads the members from the database a page at a time, seeking to the first one the
range touches by its offset, and builds each header and central entry as it is sent. So the memory a
download holds is one page of members and one chunk of data, whatever the batch's size; the bytes
are exactly those `aethera.export.layout` gives for the same members.

Every database and file call is blocking, so the caller runs each in a thread (`asyncio.to_thread`),
one at a time per archive: a `BatchArchive` is used by one request. `close()` removes the directory;
the route calls it on every way out, a client that disconnects included.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from aethera import batch_summary
from aethera.export import (
    ExportMember,
    ZipStamp,
    central_entry,
    central_entry_size,
    directory_tail,
    local_header,
    local_header_size,
    member_slice,
)
from aethera.storage.base import DEFAULT_CHUNK_BYTES, Storage

SUMMARY_CSV = "summary.csv"
SUMMARY_GEOJSON = "summary.geojson"

# Members read from the database per step while serving; a page holds at most this many manifests
# (a few KiB each), so a download's memory stays well under a MiB of plan.
PAGE_MEMBERS = 128
_FILE_CHUNK = 256 * 1024

_SCHEMA = """
CREATE TABLE rows (pos INTEGER PRIMARY KEY, row BLOB NOT NULL, geometry BLOB NOT NULL, {keys});
CREATE TABLE members (
    seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, crc32 INTEGER NOT NULL,
    sha256 TEXT NOT NULL, key TEXT, data BLOB, file TEXT,
    local_off INTEGER, central_off INTEGER
);
"""
_SORT = batch_summary.DEFAULT_SORT
# the summary's two files are the archive's first members; the sites' members follow from here
_FIRST_SITE_SEQ = 2


def _order_by(sort: Sequence[str]) -> str:
    """`batch_summary.rank`'s order in SQL: per key nulls last, then its value (descending for `-`);
    ties in collection order. (SQLite compares numbers numerically and text by code point, as Python.)"""
    terms = []
    for i, key in enumerate(sort):
        terms += [f"k{i} IS NULL", f"k{i} DESC" if key.startswith("-") else f"k{i}"]
    return ", ".join([*terms, "pos"])


class BatchArchive:
    """One batch export's plan on disk. Methods block: call them in a thread, one at a time."""

    def __init__(self, modified: datetime) -> None:
        self.stamp = ZipStamp.of(modified)
        self.directory = Path(tempfile.mkdtemp(prefix="aethera-batch-export-"))
        try:
            # journal off and no syncs: the file is scratch space that dies with the request
            self._db = sqlite3.connect(self.directory / "plan.sqlite", check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.execute("PRAGMA cache_size = -2048")  # 2 MiB of page cache, not the default 8 MiB
            keys = ", ".join(f"k{i}" for i in range(len(_SORT)))
            self._db.executescript(_SCHEMA.format(keys=keys))
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self._next_seq = _FIRST_SITE_SEQ
        self.size = 0
        self.etag = ""
        self.count = 0
        self.cd_offset = 0
        self.cd_size = 0

    def close(self) -> None:
        """Drop the database and every file of the plan."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- building ----------------------------------------------------------------------------------

    def add_sites(self, rows: Sequence[tuple[int, dict[str, Any], Any]], members: Sequence[ExportMember]) -> None:
        """One page of sites: (position in the batch, summary row, AOI geometry) each, and the members
        of their run folders, in archive order."""
        self._db.execute("BEGIN")
        self._db.executemany(
            f"INSERT INTO rows VALUES (?, ?, ?, {', '.join('?' * len(_SORT))})",
            [
                (
                    pos,
                    msgspec.json.encode(row),
                    msgspec.json.encode(geometry),
                    *(_sql_value(batch_summary.sort_value(row, key.lstrip("-"))) for key in _SORT),
                )
                for pos, row, geometry in rows
            ],
        )
        self._db.executemany(
            "INSERT INTO members (seq, name, size, crc32, sha256, key, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(self._next_seq + i, m.name, m.size, m.crc32, m.sha256, m.key, m.data) for i, m in enumerate(members)],
        )
        self._db.execute("COMMIT")
        self._next_seq += len(members)

    def finish(self) -> None:
        """Write the summary files (default order), then lay the archive out: every member's offsets,
        the size and the ETag."""
        self._write_summaries()
        stamp, tag = self.stamp, hashlib.sha256()
        offset = central = count = 0
        seq = -1
        self._db.execute("BEGIN")
        while page := self._db.execute(
            "SELECT seq, name, size, sha256 FROM members WHERE seq > ? ORDER BY seq LIMIT 1000", (seq,)
        ).fetchall():
            updates: list[tuple[int, int, int]] = []
            for seq, name, size, sha in page:
                if seq == 0 and size >= 0xFFFFFFFF:
                    raise ValueError("the first member must fit in 32 bits")
                updates.append((offset, central, seq))
                tag.update(f"{name}\0{sha}\n".encode())
                central += central_entry_size(name, size, offset, stamp)
                offset += local_header_size(name, size, stamp) + size
                count += 1
            self._db.executemany("UPDATE members SET local_off = ?, central_off = ? WHERE seq = ?", updates)
        self._db.execute("CREATE INDEX members_local ON members (local_off)")
        self._db.execute("CREATE INDEX members_central ON members (central_off)")
        self._db.execute("COMMIT")
        self.count, self.cd_offset, self.cd_size = count, offset, central
        self.size = offset + central + len(directory_tail(count, offset, central))
        self.etag = f'"{tag.hexdigest()[:40]}"'

    def _write_summaries(self) -> None:
        """summary.csv and summary.geojson, as `batch_summary.to_csv` and `to_geojson` would write them
        for the ranked rows, streamed row by row to files."""
        csv_path, geojson_path = self.directory / SUMMARY_CSV, self.directory / SUMMARY_GEOJSON
        with open(csv_path, "w", encoding="utf-8", newline="") as csv_file, open(geojson_path, "wb") as geo_file:
            writer = csv.writer(csv_file, lineterminator="\r\n")
            writer.writerow(batch_summary.COLUMN_NAMES)
            geo_file.write(b'{"type":"FeatureCollection","features":[')
            query = f"SELECT row, geometry FROM rows ORDER BY {_order_by(_SORT)}"
            for rank, (raw_row, geometry) in enumerate(self._db.execute(query), 1):
                row = msgspec.json.decode(raw_row)
                row["rank"] = rank
                writer.writerow(batch_summary.csv_cells(row))
                if rank > 1:
                    geo_file.write(b",")
                geo_file.write(msgspec.json.encode(batch_summary.geojson_feature(row, msgspec.Raw(geometry))))
            geo_file.write(b"]}")
        self._db.executemany(
            "INSERT INTO members (seq, name, size, crc32, sha256, file) VALUES (?, ?, ?, ?, ?, ?)",
            [(seq, path.name, *_file_digest(path), str(path)) for seq, path in enumerate((csv_path, geojson_path))],
        )

    # --- serving -----------------------------------------------------------------------------------

    def members_from(self, seq: int, limit: int = PAGE_MEMBERS) -> list[tuple[Any, ...]]:
        """A page of members in archive order from `seq`: (seq, name, size, crc32, key, data, file,
        local_off, central_off)."""
        return self._db.execute(
            "SELECT seq, name, size, crc32, key, data, file, local_off, central_off FROM members"
            " WHERE seq >= ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()

    def seek(self, position: int) -> int:
        """The seq of the member whose local header or data holds archive byte `position`, or, past
        the members, of the central entry that holds it (0 when before the first)."""
        column = "local_off" if position < self.cd_offset else "central_off"
        at = position if position < self.cd_offset else position - self.cd_offset
        found = self._db.execute(
            f"SELECT seq FROM members WHERE {column} <= ? ORDER BY {column} DESC LIMIT 1",
            (at,),
        ).fetchone()
        return int(found[0]) if found else 0


def _sql_value(value: Any) -> Any:
    """A sort value SQLite stores as it compares in Python (numbers, text, null)."""
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def _file_digest(path: Path) -> tuple[int, int, str]:
    """(size, CRC-32, SHA-256) of a file, read in chunks."""
    crc, sha, size = 0, hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_FILE_CHUNK):
            crc = zlib.crc32(chunk, crc)
            sha.update(chunk)
            size += len(chunk)
    return size, crc & 0xFFFFFFFF, sha.hexdigest()


def _read_file(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _chunks(data: bytes, lo: int, hi: int, chunk_size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for at in range(lo, hi, chunk_size):
        yield bytes(view[at : min(hi, at + chunk_size)])


async def iter_batch_archive(
    archive: BatchArchive,
    storage: Storage,
    start: int = 0,
    end: int | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_BYTES,
) -> AsyncGenerator[bytes, None]:
    """The archive's bytes `start` (inclusive) to `end` (exclusive), in chunks of at most `chunk_size`:
    as `aethera.export.iter_archive`, with the plan read from `archive` a page at a time."""
    end = archive.size if end is None else min(end, archive.size)
    if start < 0 or start > end:
        raise ValueError("invalid byte range")
    stamp, cd_offset = archive.stamp, archive.cd_offset
    if start < cd_offset:
        seq = await asyncio.to_thread(archive.seek, start)
        while True:
            page = await asyncio.to_thread(archive.members_from, seq)
            for seq, name, size, crc, key, data, file, local_off, _ in page:
                if local_off >= end:
                    return
                header = local_header(name, size, crc, stamp, first=seq == 0)
                lo, hi = max(start - local_off, 0), min(end - local_off, len(header))
                if lo < hi:
                    for chunk in _chunks(header, lo, hi, chunk_size):
                        yield chunk
                data_off = local_off + len(header)
                lo, hi = max(start - data_off, 0), min(end - data_off, size)
                if lo >= hi:
                    continue
                if data is not None:
                    for chunk in _chunks(data, lo, hi, chunk_size):
                        yield chunk
                elif file is not None:
                    for at in range(lo, hi, chunk_size):
                        yield await asyncio.to_thread(_read_file, file, at, min(hi, at + chunk_size) - at)
                else:
                    async with contextlib.aclosing(member_slice(storage, key, lo, hi - lo, chunk_size)) as chunks:
                        async for chunk in chunks:
                            yield chunk
            if len(page) < PAGE_MEMBERS:
                break
            seq += 1
    if end <= cd_offset:
        return
    # the central directory, built entry by entry a page at a time, then its end records
    seq = await asyncio.to_thread(archive.seek, max(start, cd_offset))
    page_at: int | None = None  # archive offset of the page's first entry
    while True:
        page = await asyncio.to_thread(archive.members_from, seq)
        buffer = io.BytesIO()
        for _, name, size, crc, _, _, _, local_off, central_off in page:
            if page_at is None:
                page_at = cd_offset + central_off
            buffer.write(central_entry(name, size, crc, local_off, stamp))
        last = len(page) < PAGE_MEMBERS
        if last:
            buffer.write(directory_tail(archive.count, cd_offset, archive.cd_size))
        if page_at is None:  # only when the seek landed past the last entry: the tail alone
            page_at = cd_offset + archive.cd_size
        data = buffer.getvalue()
        lo, hi = max(start - page_at, 0), min(end - page_at, len(data))
        if lo < hi:
            for chunk in _chunks(data, lo, hi, chunk_size):
                yield chunk
        page_at += len(data)
        if last or page_at >= end:
            return
        seq = page[-1][0] + 1
