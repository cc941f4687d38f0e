"""Imported once by the pipeline processes' forkserver (see `pipeline_process`), never by anything else.

Every child forked from it starts with what a run would otherwise load first: the geospatial libraries
(some are imported lazily inside the steps), the packaged coefficient, weight, factor and rule-pack
files, and the most used coordinate transformations (their first creation queries PROJ's database).
No dataset is opened here: an open file would be shared by every child, with one file offset.
"""

from __future__ import annotations

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
from aethera.data import catalog  # noqa: F401
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


try:
    _fill_caches()
except Exception:  # a run fills them itself, and reports what fails with the run
    logging.getLogger(__name__).warning("pipeline caches not filled in advance", exc_info=True)
