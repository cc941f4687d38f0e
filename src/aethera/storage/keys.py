"""The one rule for what a storage key may be, shared by every backend.

A key is a forward-slash relative path such as `runs/3f2a…/layers/natura.geojson`. The same rule
applies on disk and on S3 so that an object stored through one backend can always be stored through
the other, and so that no key can name anything outside the storage root. Messages describe what is
wrong with the key and never mention where the storage lives.
"""

from __future__ import annotations

import re

from aethera.errors import InvalidKey

MAX_KEY_BYTES = 1024  # S3's limit on a key, applied to both backends
MAX_SEGMENT_BYTES = 255  # NAME_MAX of every common local file system

# Local writes go to `<dir>/.aethera-tmp.<random>` before the atomic rename; keys may not use that
# name, so listings can skip half-written files without hiding a real object.
TEMP_PREFIX = ".aethera-tmp."

# C0 controls, DEL and C1 controls: invisible in logs, and NUL truncates paths in C libraries.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidKey(f"{what} must be a string")
    if _CONTROL.search(value):
        raise InvalidKey(f"{what} contains a NUL or control character")
    if "\\" in value:
        raise InvalidKey(f"{what} contains a backslash; use forward slashes")
    if value.startswith("/"):
        raise InvalidKey(f"{what} must be relative, not start with '/'")
    if _DRIVE.match(value):
        raise InvalidKey(f"{what} must not start with a drive letter")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"{what} is not valid UTF-8 text") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    return value


def _check_segment(segment: str, what: str) -> None:
    if segment == "":
        raise InvalidKey(f"{what} has an empty path segment (leading, trailing or doubled '/')")
    if segment in (".", ".."):
        raise InvalidKey(f"{what} contains a '{segment}' segment")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidKey(f"{what} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    if segment.startswith(TEMP_PREFIX):
        raise InvalidKey(f"{what} uses the reserved name prefix {TEMP_PREFIX!r}")


def validate_key(key: object) -> str:
    """Return `key` unchanged when it is a safe relative key, else raise `InvalidKey`."""
    text = _check_text(key, "key")
    if text == "":
        raise InvalidKey("key must not be empty")
    for segment in text.split("/"):
        _check_segment(segment, "key")
    return text


def validate_prefix(prefix: object) -> str:
    """Return a listing prefix unchanged when it is safe, else raise `InvalidKey`.

    A prefix is a key that may be empty, may end in '/' (a "directory") and may end part-way through
    a segment (`runs/3f` matches `runs/3f2a…/…`).
    """
    text = _check_text(prefix, "prefix")
    if text == "":
        return text
    segments = text.split("/")
    if segments[-1] == "":  # one trailing slash is how a prefix names a "directory"
        segments.pop()
    for segment in segments:
        _check_segment(segment, "prefix")
    return text


def split_prefix(prefix: str) -> tuple[str, str]:
    """Split a validated prefix into its directory part and the start of the next segment.

    `runs/3f` -> (`runs`, `3f`); `runs/` -> (`runs`, ``); `` -> (``, ``).
    """
    directory, _, partial = prefix.rpartition("/")
    return directory, partial


def validate_page(start_after: object, limit: object, max_keys: int) -> str | None:
    """Check `list_page`'s arguments: `start_after` is a key-like text (or None), `limit` 1 to `max_keys`."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= max_keys:
        raise InvalidKey(f"a listing page holds 1 to {max_keys} keys")
    if start_after is None:
        return None
    return _check_text(start_after, "start_after")
