"""`pyogrio.read_info` of a vector layer, once per process and version of the file.

A run asks each vector layer for its CRS and bounds several times (the datasets step, then each step that
reads the layer); every `read_info` opens the file and parses its header, ~5-10 ms of CPU for a
GeoPackage. The answer is kept per (path, layer, bounds wanted) together with the file's version: the size
and mtime (ns) of the file and of a shapefile's sidecars, as result reuse fingerprints a local source
(`jobs/reuse.py`), so a dataset replaced in place is read again. A source that is not a plain local file
(`/vsis3/`, `/vsicurl/`, a FileGDB directory) is read every time: its version would cost a request or a
walk of its files.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")
_MAX_ENTRIES = 64  # a catalog has a handful of layers

_lock = threading.Lock()
_cache: dict[tuple[Any, ...], dict[str, Any]] = {}


def read_info(path: str, layer: str | int | None = None, *, force_total_bounds: bool = False) -> dict[str, Any]:
    """`pyogrio.read_info(path, layer=layer, force_total_bounds=...)`, from the cache when the file has not
    changed since. Raises what pyogrio raises."""
    import pyogrio

    version = _version(path)
    if version is None:
        info: dict[str, Any] = pyogrio.read_info(path, layer=layer, force_total_bounds=force_total_bounds)
        return info
    key = (path, layer, force_total_bounds, version)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return dict(hit)  # a copy: a caller changing its dict changes nobody else's
    info = pyogrio.read_info(path, layer=layer, force_total_bounds=force_total_bounds)
    with _lock:
        if len(_cache) >= _MAX_ENTRIES:
            _cache.clear()
        _cache[key] = dict(info)
    return info


def _version(path: str) -> tuple[Any, ...] | None:
    """Size and mtime of the file (and of a shapefile's sidecars); None when it is no plain local file."""
    if path.startswith("/vsi"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None  # missing: pyogrio raises its own error, worded for the layer by the caller
    if not os.path.isfile(path):
        return None
    out: list[Any] = [st.st_size, st.st_mtime_ns, st.st_ino]
    root, ext = os.path.splitext(path)
    if ext.lower() == ".shp":
        for side in _SHAPEFILE_SIDECARS:
            for candidate in (root + side, root + side.upper()):
                try:
                    s = os.stat(candidate)
                except OSError:
                    continue
                out += [candidate, s.st_size, s.st_mtime_ns, s.st_ino]
    return tuple(out)
