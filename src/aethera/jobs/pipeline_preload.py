"""Imported once by the pipeline processes' forkserver (see `pipeline_process`), never by anything else.

Every child forked from it starts with what a run would otherwise load first: the geospatial libraries
(some are imported lazily inside the steps), the packaged coefficient, weight, factor and rule-pack
files, and the most used coordinate transformations (their first creation queries PROJ's database).
No dataset is left open here: an open file would be shared by every child, with one file offset; the
local layers' CRSs and header information are read (each file opened and closed) and cached.
"""

from __future__ import annotations

import gc
import logging

import exactextract  # noqa: F401
import geopandas  # noqa: F401
import pyogrio  # noqa: F401
import rasterio
import rasterio.features
import rasterio.mask
import rasterio.warp  # noqa: F401

from aethera import report  # rendered by the child at the end of every run
from aethera.analysis import aoi, emissions, indices, kpis, params, pipeline, projection  # noqa: F401
from aethera.data import catalog
from aethera.legal import packs


def _fill_caches() -> None:
    kpis.load_coefficients()
    indices.load_weights()
    emissions.load_factors()
    packs.load_all_packs()
    packs.annex_iii()
    report.warm_templates()  # compiled once here, not by every child
    # the forkserver's main thread is each child's main thread: its transformer cache is inherited
    projection.transformer(projection.WGS84, projection.ETRS89_LAEA)
    projection.transformer(projection.ETRS89_LAEA, projection.WGS84)


def _warm_datasets() -> None:
    """What every run asks of the catalog's local layers: their CRS (a vector layer's `read_info`, a
    raster's WKT parsed) and its transformations to and from WGS 84 and EPSG:3035. Each file is opened
    and closed again (no open file is inherited), and the caches check the file's version on each use
    (`data/vector_info.py`), so a dataset replaced later is read afresh by the run. Remote layers
    (/vsis3/, /vsicurl/) are left to the runs: the forkserver has not configured GDAL for them."""
    from aethera.analysis.layers import layer_crs
    from aethera.settings import load_settings

    for sources in catalog.load_catalog(load_settings().datasets).layers.values():
        for source in sources:
            if source.path.startswith("/vsi"):
                continue
            crs = layer_crs(source)
            for other in (projection.WGS84, projection.ETRS89_LAEA):
                projection.transformer(crs, other)
                projection.transformer(other, crs)


try:
    _fill_caches()
except Exception:  # a run fills them itself, and reports what fails with the run
    logging.getLogger(__name__).warning("pipeline caches not filled in advance", exc_info=True)
try:
    _warm_datasets()
except Exception as exc:  # a missing or unreadable dataset: the run reports it, worded for the layer
    logging.getLogger(__name__).info("dataset CRSs not prepared in advance (%s)", type(exc).__name__)
# every object so far lives as long as the forkserver: kept out of the collector's passes, so a child's
# collections neither walk them nor copy their pages (a write to a shared page copies it)
gc.collect()
gc.freeze()
