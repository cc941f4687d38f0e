"""The API's AOI checks run on their own threads, each prepared with the transformations every check
needs before any request meets it, and a bad AOI is still the request's 422 reason."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aethera.analysis import projection
from aethera.api import aoi_input
from aethera.errors import InvalidAOI
from aethera.settings import Settings


def _thread_state() -> tuple[str, set[tuple[str, str]]]:
    cache: dict[tuple[str, str], Any] = getattr(projection._local, "cache", {})
    return threading.current_thread().name, set(cache)


def test_check_threads_are_prepared_when_started() -> None:
    aoi_input.start_checkers()
    executor = aoi_input._executor()
    # every thread that runs checks has the WGS 84 <-> EPSG:3035 pair before its first check
    names = set()
    for _ in range(8):
        name, pairs = executor.submit(_thread_state).result(timeout=60)
        names.add(name)
        assert ("EPSG:4326", "EPSG:3035") in pairs and ("EPSG:3035", "EPSG:4326") in pairs
    assert all(n.startswith("aethera-aoi") for n in names) and len(names) <= aoi_input._CHECK_THREADS


async def test_a_bad_aoi_is_still_refused_with_its_reason() -> None:
    with pytest.raises(InvalidAOI):
        await aoi_input.validate_aoi(b"not an AOI", filename=None, catalog=None, settings=Settings())
