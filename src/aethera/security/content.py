"""What a file is, decided by its bytes, never by its name.

A client names a file whatever it likes; the readers behind `load_aoi` recognise formats by content
(Python's zipfile finds a zip behind any preamble, GDAL sniffs SQLite and XML). So the service decides
by content too: `sniff` says what the bytes are, `identify` refuses compressed formats no reader here
handles and a name that claims something else, and `check_content` (files stored for later) also checks
every zip with `check_zip` and every XML for entity declarations, before any reader opens the file.
"""

from __future__ import annotations

import enum
import io
import re
import zipfile
from pathlib import PurePosixPath

from aethera.errors import InvalidAOI
from aethera.security.archives import ArchiveLimits, archive_format, check_zip

_SNIFF_BYTES = 8 * 1024
_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"
_SQLITE = b"SQLite format 3\x00"
_XML_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# before the root element: blanks, the XML declaration, processing instructions and comments only
# (possessive: a run of them is never re-split, which would backtrack exponentially)
_KML_ROOT_WINDOW = 64 * 1024
_KML_ROOT = re.compile(rb"(?:\s|<\?.*?\?>|<!--.*?-->)*+<(?:[A-Za-z_][\w.-]*:)?kml[\s>/]", re.DOTALL)


class Kind(enum.Enum):
    ZIP = "a zip archive"
    COMPRESSED = "a compressed file"
    SQLITE = "a GeoPackage (SQLite)"
    XML = "XML (KML)"
    JSON = "JSON (GeoJSON)"
    TEXT = "text (WKT)"
    BINARY = "binary data"


# the kind of content each accepted file name promises
KIND_OF_SUFFIX: dict[str, Kind] = {
    ".geojson": Kind.JSON,
    ".json": Kind.JSON,
    ".zip": Kind.ZIP,
    ".kmz": Kind.ZIP,
    ".gpkg": Kind.SQLITE,
    ".kml": Kind.XML,
    ".wkt": Kind.TEXT,
}


def compressed_format(data: bytes) -> str | None:
    """The archive or compressed format other than zip `data` is in (gzip, bzip2, tar, ...), or None.

    No reader of the service opens these: they are refused by content, whatever the name says.
    """
    name = archive_format(data[:_SNIFF_BYTES])
    return None if name == "zip" else name


def is_zip(data: bytes) -> bool:
    """True for anything Python's zipfile would open, with or without a preamble before the first entry.

    zipfile finds an archive by the end-of-central-directory record near the end of the bytes, so junk in
    front of a zip does not hide it; a local header anywhere in bytes that are not a SQLite file counts
    too (no text format holds the byte 0x03, and a zip whose directory was cut off is still a zip).
    """
    if data.startswith((_ZIP_LOCAL, _ZIP_EMPTY)):
        return True
    if zipfile.is_zipfile(io.BytesIO(data)):
        return True
    # a GeoPackage may hold those four bytes by chance inside a blob; SQLite never inflates anything
    return not data.startswith(_SQLITE) and _ZIP_LOCAL in data


def sniff(data: bytes) -> Kind:
    """What the bytes are. A zip wins over every other reading: some reader would open it as one."""
    if is_zip(data):
        return Kind.ZIP
    if compressed_format(data) is not None:
        return Kind.COMPRESSED
    if data.startswith(_SQLITE):
        return Kind.SQLITE
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head:
        return Kind.BINARY
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if text.startswith(b"<"):
        return Kind.XML
    if text.startswith((b"{", b"[")):
        return Kind.JSON
    return Kind.TEXT


def kind_of_name(filename: str | None) -> Kind | None:
    """The kind a file name promises by its suffix; None when it promises nothing known."""
    if not filename:
        return None
    return KIND_OF_SUFFIX.get(PurePosixPath(filename.replace("\\", "/")).suffix.lower())


def check_name(kind: Kind, filename: str | None) -> None:
    """InvalidAOI when the file's name promises another format than its content is."""
    promised = kind_of_name(filename)
    if promised is not None and promised is not kind:
        suffix = PurePosixPath(str(filename).replace("\\", "/")).suffix.lower()
        raise InvalidAOI(
            f"the file is named {suffix} but its content is {kind.value}; "
            f"name the file after what it holds (formats are decided by content)"
        )


def check_xml(data: bytes) -> None:
    """XML is accepted only as KML: no entity declarations (how XML bombs and external-entity reads
    work; a KML never needs them) and a `kml` root element, so GDAL cannot take it for GML, GPX or
    another XML format whose reader may fetch schemas or follow links."""
    if _XML_DECLARATIONS.search(data):
        raise InvalidAOI("KML with a DOCTYPE or ENTITY declaration is refused")
    if not _KML_ROOT.match(data[:_KML_ROOT_WINDOW].removeprefix(b"\xef\xbb\xbf")):
        raise InvalidAOI("the XML file is not KML (its root element is not <kml>)")


def refuse_compressed(data: bytes) -> None:
    name = compressed_format(data)
    if name is not None:
        raise InvalidAOI(
            f"the file is {name}-compressed; upload it uncompressed, or a zipped Shapefile or KMZ as a .zip"
        )


def identify(data: bytes, filename: str | None) -> Kind:
    """What `data` is, once its name agrees: a compressed file is refused first (no name would fit it)."""
    kind = sniff(data)
    if kind is Kind.COMPRESSED:
        refuse_compressed(data)
    check_name(kind, filename)
    return kind


def check_content(data: bytes, filename: str | None, limits: ArchiveLimits) -> Kind:
    """Identify `data`, refusing a name that lies about it, and check it as what it is (CPU work: in a
    thread). Every zip goes through `check_zip` (names, links, nesting, sizes, ratio, CRC), whatever it
    is called; XML is checked for entity declarations.
    """
    kind = identify(data, filename)
    if kind is Kind.ZIP:
        check_zip(data, limits)
    elif kind is Kind.XML:
        check_xml(data)
    return kind
