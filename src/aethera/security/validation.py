"""Strict patterns for the identifiers the security layer takes from requests and from its keys file.

Each kind of request value is checked in exactly one place before it is used:
- ids of projects, runs, tasks and uploads: `keyspace.ID_RE` (here `is_id`/`check_id`, and `api.ids`);
- tenant names: `TENANT_RE` here (they end up in records, logs and index keys);
- countries: the `CountryCode` pattern of `models` and the known-code list of `data.countries`;
- layer names: `keyspace.LAYER_NAMES`;
- storage keys: `storage.keys` (every backend refuses traversal, absolute paths, control characters);
- upload names and `aoi_path`: `keyspace.UPLOAD_NAME_RE` / `AOI_PATH_RE`, or an upload id.
Patterns end in `\\Z`, not `$`, which would also accept a trailing newline.
"""

from __future__ import annotations

import re

from aethera.errors import InvalidInput, NotFound
from aethera.keyspace import ID_RE

TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")


def is_id(value: str) -> bool:
    """True when `value` has the shape of an id the service issues (uuid4().hex)."""
    return isinstance(value, str) and ID_RE.match(value) is not None


def check_id(value: str, what: str = "id") -> str:
    """`value` when it is a 32-char lowercase hex id; otherwise NotFound, exactly like an unknown id.

    A malformed id answers 404 rather than 400 on purpose: it cannot name anything that exists, and
    answering it differently from an unknown id would tell a caller how ids are checked.
    """
    if not is_id(value):
        raise NotFound(f"{what} not found")
    return value


def check_tenant(value: str) -> str:
    """A tenant name: 1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit."""
    if not isinstance(value, str) or not TENANT_RE.match(value):
        raise InvalidInput("tenant must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
    return value
