"""Checking a run's AOI before it is queued, off the event loop (parsing and reprojection use GDAL/PROJ).

A bad AOI is the request's fault: `InvalidAOI` (422) with the reason, never a FAILED run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aethera.errors import AetheraError, InvalidAOI
from aethera.settings import Settings

log = logging.getLogger(__name__)


def _load_and_check(source: bytes, filename: str | None, catalog: Any, settings: Settings) -> Any:
    from aethera.analysis.aoi import check_within_catalog, load_aoi

    if source[:4] == b"PK\x03\x04":
        # a zip (a zipped Shapefile): every member is checked before any reader opens the archive
        from aethera.security.archives import ArchiveLimits, check_zip

        check_zip(source, ArchiveLimits.from_settings(settings))
    kwargs: dict[str, Any] = {"max_area_km2": settings.max_aoi_km2}
    if filename is not None:
        kwargs["filename"] = filename.rsplit("/", 1)[-1]
    try:
        aoi = load_aoi(source, **kwargs)
    except AetheraError:
        raise
    except RecursionError:  # a JSON decoder's answer to nesting past its depth limit: the file's fault
        raise InvalidAOI("the AOI is nested too deeply to be GeoJSON") from None
    except Exception:  # a reader's own exception types (GEOS, GDAL, XML): the file is what is wrong
        log.info("AOI did not load", exc_info=True)
        raise InvalidAOI("the AOI could not be read as an area of interest") from None
    check_within_catalog(aoi, catalog)
    return aoi


async def validate_aoi(source: bytes, *, filename: str | None, catalog: Any, settings: Settings) -> Any:
    """The parsed AOI (`aethera.analysis.aoi.AOI`), or InvalidAOI saying what is wrong with it."""
    return await asyncio.to_thread(_load_and_check, source, filename, catalog, settings)


def aoi_geojson_bytes(aoi: Any) -> bytes:
    """The AOI as a GeoJSON Feature in EPSG:4326: what `runs/{id}/aoi.geojson` stores for the worker."""
    return bytes(aoi.to_geojson())
