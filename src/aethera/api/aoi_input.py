"""Checking a client's AOI, off the event loop (sniffing, archive checks, parsing and reprojection are CPU work).

A bad AOI is the request's fault: `InvalidAOI` (422) with the reason, never a FAILED run. Every path a
client's file takes (`aoi_geojson`, an upload id, a project upload named by `aoi_path`) comes through
`load_aoi` with `client_input=True`: the content decides the format, any zip is checked with the
deployment's `AETHERA_ARCHIVE_*` limits before a reader opens it, and the client's `aethera:*` foreign
members are ignored, so the stored AOI carries only the service's own repairs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aethera.errors import AetheraError, InvalidAOI
from aethera.security.archives import ArchiveLimits
from aethera.security.content import check_content
from aethera.settings import Settings

log = logging.getLogger(__name__)

# The API's AOI checks run on two threads of their own, not on the loop's default executor (up to 6
# threads here, started as load comes): a thread's first check builds the WGS 84 <-> EPSG:3035
# transformations, ~0.2 s of CPU that PROJ spends searching its database (they are cached per thread,
# `analysis/projection.py`), and the request that met a fresh thread waited for it. These threads build
# them as they start, at start-up (`start_checkers`). The check is CPU work under the GIL: more threads
# would not check faster.
_CHECK_THREADS = 2
_checkers: ThreadPoolExecutor | None = None
_checkers_lock = threading.Lock()


def _prepare_thread() -> None:
    from aethera.analysis import projection

    try:
        projection.transformer(projection.WGS84, projection.ETRS89_LAEA)
        projection.transformer(projection.ETRS89_LAEA, projection.WGS84)
    except Exception:  # a check builds them itself, and reports what fails with the request
        log.warning("AOI check thread not prepared", exc_info=True)


def _executor() -> ThreadPoolExecutor:
    global _checkers
    with _checkers_lock:
        if _checkers is None:
            _checkers = ThreadPoolExecutor(
                _CHECK_THREADS, thread_name_prefix="aethera-aoi", initializer=_prepare_thread
            )
        return _checkers


def start_checkers() -> None:
    """Start the AOI check threads now (each prepares itself in the background), not at the first request."""
    executor = _executor()
    for _ in range(_CHECK_THREADS):  # each submit finds the thread before it busy preparing: a new thread
        executor.submit(int)


def _load_and_check(source: bytes, filename: str | None, catalog: Any, settings: Settings) -> Any:
    from aethera.analysis.aoi import check_within_catalog, load_aoi

    kwargs: dict[str, Any] = {"max_area_km2": settings.max_aoi_km2}
    if filename is not None:
        kwargs["filename"] = filename.rsplit("/", 1)[-1]
    try:
        aoi = load_aoi(source, archive_limits=ArchiveLimits.from_settings(settings), client_input=True, **kwargs)
    except AetheraError:
        raise
    except RecursionError:  # a JSON decoder's answer to nesting past its depth limit: the file's fault
        raise InvalidAOI("the AOI is nested too deeply to be GeoJSON") from None
    except Exception:  # a reader's own exception types (GEOS, GDAL, XML): the file is what is wrong
        log.info("AOI did not load", exc_info=True)
        raise InvalidAOI("the AOI could not be read as an area of interest") from None
    check_within_catalog(aoi, catalog)
    return aoi


def check_aoi_sync(source: bytes, filename: str | None, catalog: Any, settings: Settings) -> Any:
    """`validate_aoi` for a caller already off the loop (a batch checks its sites in one thread)."""
    return _load_and_check(source, filename, catalog, settings)


async def validate_aoi(source: bytes, *, filename: str | None, catalog: Any, settings: Settings) -> Any:
    """The parsed AOI (`aethera.analysis.aoi.AOI`), or InvalidAOI saying what is wrong with it."""
    context = contextvars.copy_context()  # the request's log context goes with it, as with to_thread
    return await asyncio.get_running_loop().run_in_executor(
        _executor(), functools.partial(context.run, _load_and_check, source, filename, catalog, settings)
    )


async def check_aoi_file(data: bytes, filename: str, settings: Settings) -> None:
    """Refuse a stored-for-later AOI file whose content is not what its name says, an unsafe zip
    (`check_zip`), compressed data or XML with entity declarations, before it is stored."""
    await asyncio.to_thread(check_content, data, filename, ArchiveLimits.from_settings(settings))


def aoi_geojson_bytes(aoi: Any) -> bytes:
    """The AOI as a GeoJSON Feature in EPSG:4326: what `runs/{id}/aoi.geojson` stores for the worker."""
    return bytes(aoi.to_geojson())
