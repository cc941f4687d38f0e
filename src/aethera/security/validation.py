"""Strict patterns for every identifier a request may carry, checked before the value is used.

A value that reaches storage, Redis or a file name has matched one of these patterns first, so no
request can smuggle a path separator, `..`, a NUL byte or a Redis key fragment into the service.
Patterns are anchored with `\\Z` (not `$`, which would accept a trailing newline).
"""

from __future__ import annotations

import re

from aethera.errors import InvalidInput, NotFound, UnknownCountry

# ids the service makes itself: uuid4().hex
ID_RE = re.compile(r"[0-9a-f]{32}\Z")
# ISO 3166-1 alpha-3, upper case as api.md writes it (DEU, FRA, ESP)
COUNTRY_RE = re.compile(r"[A-Z]{3}\Z")
# layer names of GET /runs/{id}/biodiversity/{layer}
LAYER_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
BIODIVERSITY_LAYERS: frozenset[str] = frozenset({"natura", "overlap", "sensitivity"})
# tenant names: they appear in logs, records and Redis keys
TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
# one segment of a storage key: no dot-only segment, no separator, nothing a shell or URL treats specially
_KEY_SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
MAX_STORAGE_KEY_CHARS = 512


def is_id(value: str) -> bool:
    """True when `value` has the shape of an id the service issues."""
    return isinstance(value, str) and ID_RE.match(value) is not None


def check_id(value: str, what: str = "id") -> str:
    """`value` when it is a 32-char lowercase hex id; otherwise NotFound, exactly like an unknown id.

    A malformed id answers 404 rather than 400 on purpose: it cannot name anything that exists, and
    answering it differently from an unknown id would tell a caller how ids are checked.
    """
    if not is_id(value):
        raise NotFound(f"{what} not found")
    return value


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-3 code in upper case (lower case is accepted and upper-cased)."""
    if not isinstance(value, str):
        raise UnknownCountry("country must be an ISO 3166-1 alpha-3 code such as DEU")
    upper = value.upper()
    if not COUNTRY_RE.match(upper):
        raise UnknownCountry("country must be an ISO 3166-1 alpha-3 code such as DEU")
    return upper


def check_layer(value: str, allowed: frozenset[str] = BIODIVERSITY_LAYERS) -> str:
    """A layer name from `allowed`; anything else is NotFound (the layer does not exist)."""
    if not isinstance(value, str) or not LAYER_RE.match(value) or value not in allowed:
        raise NotFound(f"unknown layer; use one of {', '.join(sorted(allowed))}")
    return value


def check_tenant(value: str) -> str:
    """A tenant name: 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit."""
    if not isinstance(value, str) or not TENANT_RE.match(value):
        raise InvalidInput("tenant must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
    return value


def check_storage_key(value: str) -> str:
    """A relative storage key made of safe segments (`runs/<id>/aoi.geojson`).

    Refuses absolute paths, `..` and `.` segments, backslashes, drive letters, NUL and control
    characters, empty segments and over-long keys. This is a syntactic check; whether the caller may
    read the key is decided by who owns it.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_STORAGE_KEY_CHARS:
        raise InvalidInput("invalid storage key")
    segments = value.split("/")
    for segment in segments:
        if not _KEY_SEGMENT_RE.match(segment) or segment.strip(".") == "":
            raise InvalidInput("invalid storage key")
    return value
