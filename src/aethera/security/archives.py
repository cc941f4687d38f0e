"""Check an uploaded zip before anything extracts or opens it.

Refused: member names that are absolute, hold a `..` segment, a backslash, a drive letter, a NUL or a
control character; symbolic links and other special files; encrypted members; compression methods other
than stored and deflate (the only two every reader of the service handles); nested archives; duplicate
names; more members than the limit; a declared unpacked total past the limit; a member whose
compression ratio betrays a decompression bomb. With `verify=True` every member is also decompressed
(in bounded chunks, counting bytes) and its CRC checked, so a zip whose directory lies about sizes is
caught here rather than inside a reader with fewer safeguards; the first bytes of every member are
sniffed, so an archive inside the archive is refused whatever its name. That decompression is CPU work:
call `check_zip` in a thread. Readers open a zip only through `CheckedZip`, which hands out the checked
members with every read bounded.
"""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from aethera import settings as _config
from aethera.errors import UnsafeArchive
from aethera.settings import Settings

if TYPE_CHECKING:
    from aethera.settings import Settings

_READ_CHUNK = 256 * 1024
# a ratio is only meaningful past this size: a 2 KiB file of blanks compresses 500:1 and is harmless
_RATIO_FLOOR_BYTES = 1024 * 1024
_ALLOWED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_NESTED_SUFFIXES = frozenset({".zip", ".kmz", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".zst"})
# how archives and compressed files begin: a member that starts so is a nested archive whatever its name
ARCHIVE_MAGIC: dict[bytes, str] = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"Rar!\x1a\x07": "rar",
}
_TAR_MAGIC_OFFSET = 257  # "ustar" sits here in every POSIX tar header
_MAX_NAME_CHARS = 255
# what zipfile raises on a member whose bytes are broken (zlib.error is none of the others)
_CORRUPT = (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, zlib.error)


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits of one uploaded archive; a limit left out is the settings' default (stated there only)."""

    max_members: int = field(default_factory=lambda: _config.DEFAULTS.archive_max_members)
    max_unpacked_bytes: int = field(default_factory=lambda: _config.DEFAULTS.archive_max_unpacked_bytes)
    max_ratio: float = field(default_factory=lambda: _config.DEFAULTS.archive_max_ratio)

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveLimits:
        return cls(
            max_members=settings.archive_max_members,
            max_unpacked_bytes=settings.archive_max_unpacked_bytes,
            max_ratio=settings.archive_max_ratio,
        )


@dataclass(frozen=True)
class Member:
    """A file of a checked archive."""

    name: str  # normalised, relative, forward slashes
    size: int


def check_zip(data: bytes, limits: ArchiveLimits, *, verify: bool = True) -> list[Member]:
    """The regular files of `data` (a zip) once every check passes; raises UnsafeArchive otherwise."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise UnsafeArchive("the file is not a readable zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise UnsafeArchive(f"the archive holds {len(infos)} entries; at most {limits.max_members} are accepted")
        members: list[Member] = []
        seen: set[str] = set()
        total = 0
        for info in infos:
            name = _check_name(info)
            if info.is_dir():
                continue
            _check_type(info, name)
            key = name.casefold()
            if key in seen:
                raise UnsafeArchive(f"the archive holds {name!r} twice")
            seen.add(key)
            total += info.file_size
            if total > limits.max_unpacked_bytes:
                raise UnsafeArchive(
                    f"the archive unpacks to more than {limits.max_unpacked_bytes} bytes; it is refused"
                )
            if info.file_size > _RATIO_FLOOR_BYTES:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_ratio:
                    raise UnsafeArchive(
                        f"{name!r} expands {ratio:.0f} times (limit {limits.max_ratio:.0f}): a decompression bomb is refused"
                    )
            members.append(Member(name=name, size=info.file_size))
        if verify:
            _verify(archive, limits)
    return members


class CheckedZip:
    """A zip that passed `check_zip`: readers take its regular members from here, and only from here.

    Each read is bounded: a member yields at most the size the (verified) directory declares, and all
    reads together at most `max_unpacked_bytes`, counted while decompressing in chunks, so no reader can
    be handed more than the check allowed even if the bytes changed their story.
    """

    def __init__(self, data: bytes, limits: ArchiveLimits) -> None:
        self.members: list[Member] = check_zip(data, limits)
        self._data = data
        self._budget = limits.max_unpacked_bytes

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def read(self, name: str) -> bytes:
        """The bytes of the checked member `name` (a name from `members`)."""
        member = next((m for m in self.members if m.name == name), None)
        if member is None:
            raise UnsafeArchive(f"the archive holds no checked entry {name[:80]!r}")
        limit = min(member.size, self._budget)
        chunks: list[bytes] = []
        read = 0
        try:
            with zipfile.ZipFile(io.BytesIO(self._data)) as archive:
                info = next(i for i in archive.infolist() if not i.is_dir() and _check_name(i) == name)
                with archive.open(info) as src:
                    while chunk := src.read(_READ_CHUNK):
                        read += len(chunk)
                        if read > limit:
                            raise UnsafeArchive(f"the archive entry {name!r} unpacks to more bytes than allowed")
                        chunks.append(chunk)
        except _CORRUPT:
            raise UnsafeArchive(f"the archive entry {name!r} is corrupt") from None
        self._budget -= read
        return b"".join(chunks)


def extract_zip(data: bytes, destination: str | Path, limits: ArchiveLimits) -> list[Path]:
    """Check `data`, then write its regular files under `destination` (which must be empty or new).

    Files are created by this function under their checked names, with `O_EXCL`, so nothing in the
    archive can choose where bytes land or overwrite a file.
    """
    members = check_zip(data, limits, verify=False)
    root = Path(destination).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    budget = limits.max_unpacked_bytes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        by_name = {_check_name(i): i for i in archive.infolist() if not i.is_dir()}
        for member in members:
            target = (root / member.name).resolve()
            if root not in target.parents:  # the name checks make this impossible; keep it impossible
                raise UnsafeArchive(f"{member.name!r} would land outside the extraction directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(by_name[member.name]) as src, open(target, "xb") as dst:
                while chunk := src.read(_READ_CHUNK):
                    budget -= len(chunk)
                    if budget < 0:
                        raise UnsafeArchive("the archive unpacks to more bytes than it declares")
                    dst.write(chunk)
            written.append(target)
    return written


def _normalise(raw: str) -> str:
    return raw.replace("\\", "/").rstrip("/")


def _check_name(info: zipfile.ZipInfo) -> str:
    # orig_filename: zipfile silently cuts `filename` at a NUL, which would hide the NUL from us
    raw = info.orig_filename
    shown = raw.encode("unicode_escape").decode("ascii")[:80]
    if not raw or len(raw) > _MAX_NAME_CHARS:
        raise UnsafeArchive("the archive holds an entry with an empty or over-long name")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise UnsafeArchive(f"the archive entry '{shown}' has a control character in its name")
    if "\\" in raw:
        raise UnsafeArchive(f"the archive entry '{shown}' uses a backslash in its name")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":"):
        raise UnsafeArchive(f"the archive entry '{shown}' has an absolute path")
    parts = PurePosixPath(raw).parts
    if any(part == ".." for part in raw.split("/")):
        raise UnsafeArchive(f"the archive entry '{shown}' points outside the archive ('..')")
    if not parts:
        raise UnsafeArchive(f"the archive entry '{shown}' has no name")
    return "/".join(parts)


def _check_type(info: zipfile.ZipInfo, name: str) -> None:
    # the Unix mode sits in the high 16 bits; zips made elsewhere leave the file-type bits at 0
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type and file_type != stat.S_IFREG:
        kind = "a symbolic link" if file_type == stat.S_IFLNK else "a special file"
        raise UnsafeArchive(f"the archive entry {name!r} is {kind}; only regular files are accepted")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"the archive entry {name!r} is encrypted")
    if info.compress_type not in _ALLOWED_METHODS:
        raise UnsafeArchive(f"the archive entry {name!r} uses an unsupported compression method")
    if PurePosixPath(name).suffix.lower() in _NESTED_SUFFIXES:
        raise UnsafeArchive(f"the archive entry {name!r} is itself an archive; nested archives are refused")


def archive_format(head: bytes) -> str | None:
    """The archive or compressed format bytes starting with `head` are in (zip, gzip, tar, ...), or None."""
    for magic, name in ARCHIVE_MAGIC.items():
        if head.startswith(magic):
            return name
    if head[_TAR_MAGIC_OFFSET : _TAR_MAGIC_OFFSET + 5] == b"ustar":
        return "tar"
    return None


def _verify(archive: zipfile.ZipFile, limits: ArchiveLimits) -> None:
    """Decompress every member, counting bytes, so sizes and CRCs are proven rather than declared.

    The first bytes of each member are sniffed too: an archive inside the archive is refused by its
    content, not only by its name.
    """
    budget = limits.max_unpacked_bytes
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = _normalise(info.orig_filename)
        try:
            with archive.open(info) as member:
                first = True
                while chunk := member.read(_READ_CHUNK):
                    budget -= len(chunk)
                    if budget < 0:
                        raise UnsafeArchive("the archive unpacks to more bytes than it declares")
                    if first and (nested := archive_format(chunk)) is not None:
                        raise UnsafeArchive(
                            f"the archive entry {name!r} is itself an archive ({nested}); nested archives are refused"
                        )
                    first = False
        except _CORRUPT:
            raise UnsafeArchive(f"the archive entry {name!r} is corrupt") from None
