"""Reading the ISO 8601 timestamps the service stores (imports nothing of ours, so any layer may use it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_utc(value: Any) -> datetime | None:
    """`value` as an aware datetime (a naive one is taken as UTC), or None when it is not a timestamp."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
