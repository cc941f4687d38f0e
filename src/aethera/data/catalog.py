"""The dataset catalog: which layer files a deployment has, and which column or band holds what.

A catalog is a TOML file (path in the `AETHERA_DATASETS` setting). Each layer is a table, or for the
vector layers an array of tables when the layer is spread over several files (rivers and lakes, Natura
2000 and national sites):

    title = "My deployment"

    [land_cover]                      # required; raster or vector CORINE codes
    path = "clc2018.tif"              # relative paths are resolved against the catalog's directory
    format = "raster"                 # raster | vector (default: from the file extension)
    band = 1
    code_scheme = "clc"               # clc (111 ... 523) | grid_code (EEA raster 1 ... 44)

    [protected_areas]                 # optional; polygons
    path = "natura2000.gpkg"
    layer = "NaturaSite_polygon"
    id_column = "SITECODE"
    name_column = "SITENAME"
    type_column = "SITETYPE"
    natura2000 = true                 # every site is a Natura 2000 site (default: judged from the type)

    [[water]]                         # optional; lines or polygons
    path = "osm_waterways.gpkg"
    name_column = "name"

    [elevation]                       # optional; raster, metres
    path = "dem.tif"

Loading validates the structure (unknown keys, wrong types, a vector-only key on a raster) and raises
`ConfigError` naming the layer and key. Whether the files exist and hold the configured columns is
checked by `inspect_source` (what `aethera datasets check` prints) and again when a run reads them; a
missing file raises `DatasetError` naming the layer, and only the file's name, never a server path; a
file that cannot be read for now (its server failed or timed out) raises `DatasetUnavailable`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aethera.errors import ConfigError, DatasetError, DatasetUnavailable

LayerFormat = Literal["raster", "vector"]

LAYER_NAMES: tuple[str, ...] = ("land_cover", "protected_areas", "settlements", "water", "elevation")
REQUIRED_LAYERS: frozenset[str] = frozenset({"land_cover"})

# Which formats each layer may take.
_FORMATS: dict[str, tuple[LayerFormat, ...]] = {
    "land_cover": ("raster", "vector"),
    "protected_areas": ("vector",),
    "settlements": ("vector",),
    "water": ("vector",),
    "elevation": ("raster",),
}
_RASTER_EXT = {".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc"}
_VECTOR_EXT = {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml", ".sqlite", ".zip"}

_COMMON_KEYS = {"path", "format", "title", "attribution", "synthetic", "crs"}
_RASTER_KEYS = {"band"}
_VECTOR_KEYS = {"layer", "id_column", "name_column", "type_column"}
_EXTRA_KEYS: dict[str, set[str]] = {
    "land_cover": {"code_scheme", "code_column"},
    "protected_areas": {"natura2000"},
    "settlements": {"population_column"},
    "water": set(),
    "elevation": set(),
}
_TOP_KEYS = {"title", "description", "synthetic", "attribution"}


@dataclass(frozen=True)
class LayerSource:
    """One file (or one layer of a file) of a catalog layer."""

    layer: str  # the catalog layer it belongs to: land_cover, protected_areas, ...
    path: str  # what GDAL opens: a resolved local path or a /vsis3/ or /vsicurl/ path
    display: str  # what messages show: the file name (and sub-layer), never the directory
    format: LayerFormat
    sublayer: str | None = None  # the layer inside a multi-layer vector file
    band: int = 1
    crs: str | None = None  # overrides the file's CRS (for files that carry none)
    code_column: str | None = None
    code_scheme: Literal["clc", "grid_code"] = "clc"
    id_column: str | None = None
    name_column: str | None = None
    type_column: str | None = None
    population_column: str | None = None
    natura2000: bool | None = None  # None: judged per site from its type
    title: str | None = None
    attribution: str | None = None
    synthetic: bool = False

    def columns(self) -> list[str]:
        """The attribute columns this source is configured to read."""
        cols = [self.code_column, self.id_column, self.name_column, self.type_column, self.population_column]
        return [c for c in cols if c]


@dataclass(frozen=True)
class Catalog:
    """A validated catalog. `layers` maps each configured layer to its sources (one or more)."""

    path: Path
    title: str
    synthetic: bool
    layers: dict[str, tuple[LayerSource, ...]] = field(default_factory=dict)
    description: str | None = None
    attribution: str | None = None

    def sources(self, name: str) -> tuple[LayerSource, ...]:
        """The sources of a layer; empty when the catalog does not configure it."""
        return self.layers.get(name, ())

    def has(self, name: str) -> bool:
        return bool(self.layers.get(name))

    def single(self, name: str) -> LayerSource | None:
        """The one source of a single-file layer (land_cover, elevation), or None."""
        sources = self.layers.get(name, ())
        return sources[0] if sources else None

    def land_cover(self) -> LayerSource:
        source = self.single("land_cover")
        if source is None:  # load_catalog refuses such a catalog; kept for catalogs built in code
            raise DatasetError("the dataset catalog has no land_cover layer (required)", layer="land_cover")
        return source


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate a catalog file; `ConfigError` (naming the layer and key) when it is invalid."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"dataset catalog {file.name!r} not found; set AETHERA_DATASETS or run `aethera sample-data`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"dataset catalog {file.name!r} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"dataset catalog {file.name!r} is not valid TOML: {exc}") from None
    return parse_catalog(data, base_dir=file.resolve().parent, path=file)


def parse_catalog(data: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Catalog:
    """Validate an already parsed catalog (a dict as TOML gives it)."""
    unknown = set(data) - _TOP_KEYS - set(LAYER_NAMES)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(f"dataset catalog: unknown layer or key {name!r}; layers are {', '.join(LAYER_NAMES)}")
    title = _opt_str(data, "title", "catalog") or "Dataset catalog"
    synthetic = _opt_bool(data, "synthetic", "catalog") or False
    layers: dict[str, tuple[LayerSource, ...]] = {}
    for name in LAYER_NAMES:
        if name not in data:
            continue
        entry = data[name]
        if isinstance(entry, dict):
            entries = [entry]
        elif isinstance(entry, list) and entry and all(isinstance(e, dict) for e in entry):
            entries = entry
        else:
            raise ConfigError(f"dataset catalog: layer {name!r} must be a table ([{name}]) or tables ([[{name}]])")
        if len(entries) > 1 and name in ("land_cover", "elevation"):
            raise ConfigError(f"dataset catalog: layer {name!r} takes exactly one file")
        layers[name] = tuple(
            _parse_source(name, e, base_dir, synthetic, where=name if len(entries) == 1 else f"{name}[{i}]")
            for i, e in enumerate(entries)
        )
    for name in REQUIRED_LAYERS:
        if name not in layers:
            raise ConfigError(f"dataset catalog: layer {name!r} is required")
    return Catalog(
        path=path or base_dir / "catalog.toml",
        title=title,
        synthetic=synthetic,
        layers=layers,
        description=_opt_str(data, "description", "catalog"),
        attribution=_opt_str(data, "attribution", "catalog"),
    )


def _parse_source(name: str, e: dict[str, Any], base_dir: Path, synthetic: bool, where: str) -> LayerSource:
    raw_path = _opt_str(e, "path", where)
    if not raw_path:
        raise ConfigError(f"dataset catalog: layer {where!r} needs a 'path'")
    fmt = _opt_str(e, "format", where)
    if fmt is None:
        fmt = _format_from_extension(raw_path, name)
    if fmt not in ("raster", "vector"):
        raise ConfigError(f"dataset catalog: layer {where!r}: format must be 'raster' or 'vector', not {fmt!r}")
    if fmt not in _FORMATS[name]:
        raise ConfigError(f"dataset catalog: layer {where!r} must be {' or '.join(_FORMATS[name])}, not {fmt}")
    allowed = _COMMON_KEYS | _EXTRA_KEYS[name] | (_RASTER_KEYS if fmt == "raster" else _VECTOR_KEYS)
    if name == "land_cover":
        allowed = allowed - ({"code_column"} if fmt == "raster" else {"code_scheme"})
    unknown = set(e) - allowed
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            f"dataset catalog: layer {where!r}: unknown key {key!r} for a {fmt} layer "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    band = e.get("band", 1)
    if isinstance(band, bool) or not isinstance(band, int) or band < 1:
        raise ConfigError(f"dataset catalog: layer {where!r}: band must be a positive integer")
    code_scheme = _opt_str(e, "code_scheme", where) or "clc"
    if code_scheme not in ("clc", "grid_code"):
        raise ConfigError(f"dataset catalog: layer {where!r}: code_scheme must be 'clc' or 'grid_code'")
    code_column = _opt_str(e, "code_column", where)
    if name == "land_cover" and fmt == "vector" and not code_column:
        raise ConfigError(f"dataset catalog: layer {where!r}: a vector land cover needs 'code_column'")
    crs = _opt_str(e, "crs", where)
    if crs is not None:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(crs)
        except CRSError:
            raise ConfigError(f"dataset catalog: layer {where!r}: unknown crs {crs!r}") from None
    resolved, display = _resolve_path(raw_path, base_dir)
    sublayer = _opt_str(e, "layer", where)
    if sublayer:
        display = f"{display}:{sublayer}"
    return LayerSource(
        layer=name,
        path=resolved,
        display=display,
        format=fmt,
        sublayer=sublayer,
        band=band,
        crs=crs,
        code_column=code_column,
        code_scheme=code_scheme,  # type: ignore[arg-type]
        id_column=_opt_str(e, "id_column", where),
        name_column=_opt_str(e, "name_column", where),
        type_column=_opt_str(e, "type_column", where),
        population_column=_opt_str(e, "population_column", where),
        natura2000=_opt_bool(e, "natura2000", where),
        title=_opt_str(e, "title", where),
        attribution=_opt_str(e, "attribution", where),
        synthetic=_opt_bool(e, "synthetic", where) if "synthetic" in e else synthetic,  # type: ignore[arg-type]
    )


def _resolve_path(raw: str, base_dir: Path) -> tuple[str, str]:
    """A path GDAL can open, and the name messages may show (never the server directory)."""
    if raw.startswith("s3://"):
        return "/vsis3/" + raw[len("s3://") :], raw.rsplit("/", 1)[-1]
    if raw.startswith(("http://", "https://")):
        return "/vsicurl/" + raw, raw.rsplit("/", 1)[-1]
    if raw.startswith("/vsi"):
        return raw, raw.rsplit("/", 1)[-1]
    p = Path(raw).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    return str(p), p.name


def _format_from_extension(raw_path: str, name: str) -> str:
    ext = Path(raw_path.split("?")[0]).suffix.lower()
    if ext in _RASTER_EXT:
        return "raster"
    if ext in _VECTOR_EXT:
        return "vector"
    if len(_FORMATS[name]) == 1:
        return _FORMATS[name][0]
    raise ConfigError(
        f"dataset catalog: layer {name!r}: cannot tell the format of {raw_path.rsplit('/', 1)[-1]!r}; "
        'add format = "raster" or "vector"'
    )


def _opt_str(d: dict[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"dataset catalog: {where!r}: {key!r} must be a string")
    return value


def _opt_bool(d: dict[str, Any], key: str, where: str) -> bool | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ConfigError(f"dataset catalog: {where!r}: {key!r} must be true or false")
    return value


# --- inspection -----------------------------------------------------------------------------------


@dataclass
class SourceReport:
    """What `aethera datasets check` prints for one source, and what a run learns when it opens it."""

    layer: str
    display: str
    path: str
    format: str
    found: bool
    required: bool
    driver: str | None = None
    crs: str | None = None
    bounds: tuple[float, float, float, float] | None = None  # in the source's CRS
    bounds_wgs84: tuple[float, float, float, float] | None = None
    count: int | None = None  # features, or pixels (width x height)
    size: tuple[int, int] | None = None  # raster width, height
    resolution: tuple[float, float] | None = None
    geometry_type: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.found and not self.problems


def inspect_source(source: LayerSource, *, bounds: bool = True) -> SourceReport:
    """Open a source's file (metadata only) and check the configured columns or band exist.

    `bounds=False` skips what a run does not need and costs time: a vector layer's extent when its driver
    cannot read it from a header, and every extent's conversion to longitude, latitude.
    """
    report = SourceReport(
        layer=source.layer,
        display=source.display,
        path=source.path,
        format=source.format,
        found=False,
        required=source.layer in REQUIRED_LAYERS,
    )
    if not source.path.startswith("/vsi") and not Path(source.path).exists():
        report.problems.append("file not found")
        return report
    try:
        if source.format == "raster":
            _inspect_raster(source, report)
        else:
            _inspect_vector(source, report, bounds)
        if bounds:
            _wgs84_bounds(report)
    except DatasetUnavailable:
        raise  # not a problem of the file: the caller tries again
    except DatasetError as exc:
        report.problems.append(exc.detail)
    return report


def _inspect_raster(source: LayerSource, report: SourceReport) -> None:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(source.path) as ds:
            report.found = True
            report.driver = ds.driver
            crs = source.crs or (ds.crs.to_string() if ds.crs else None)
            report.crs = crs
            report.bounds = tuple(ds.bounds)
            report.size = (ds.width, ds.height)
            report.count = ds.width * ds.height
            report.resolution = ds.res
            if source.band > ds.count:
                report.problems.append(f"band {source.band} requested but the file has {ds.count}")
            if crs is None:
                report.problems.append("the file has no CRS; set crs in the catalog")
    except RasterioIOError as exc:
        _raise_if_transient(exc, source)
        report.problems.append("file cannot be opened as a raster")


def _inspect_vector(source: LayerSource, report: SourceReport, bounds: bool = True) -> None:
    from pyogrio.errors import DataLayerError, DataSourceError

    from aethera.data.vector_info import read_info

    try:
        info = read_info(source.path, layer=source.sublayer, force_total_bounds=bounds)
    except (DataSourceError, DataLayerError) as exc:
        _raise_if_transient(exc, source)
        report.problems.append(
            "file cannot be opened as a vector layer"
            + (f" (or has no layer {source.sublayer!r})" if source.sublayer else "")
        )
        return
    report.found = True
    report.driver = info.get("driver")
    report.crs = source.crs or info.get("crs")
    report.count = int(info.get("features", -1))
    report.geometry_type = info.get("geometry_type")
    tb = info.get("total_bounds")
    if tb is not None and all(v == v for v in tb):
        report.bounds = tuple(float(v) for v in tb)  # type: ignore[assignment]
    fields = set(str(f) for f in info.get("fields", []))
    for col in source.columns():
        if col not in fields:
            report.problems.append(f"column {col!r} not found (columns: {', '.join(sorted(fields)) or 'none'})")
    if report.crs is None:
        report.problems.append("the file has no CRS; set crs in the catalog")


def _raise_if_transient(exc: BaseException, source: LayerSource) -> None:
    """A file that failed to open for a transient reason is not "missing": the caller must try again
    (a run's attempt), not drop the layer or fail the run."""
    from aethera.data.gdal_io import read_error

    error = read_error(exc, source.layer, "", source.display)
    if isinstance(error, DatasetUnavailable):
        raise error from None


def _wgs84_bounds(report: SourceReport) -> None:
    if report.bounds is None or report.crs is None:
        return
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError, ProjError

    try:
        t = Transformer.from_crs(CRS.from_user_input(report.crs), "EPSG:4326", always_xy=True)
        b = t.transform_bounds(*report.bounds, densify_pts=21)
    except (CRSError, ProjError):
        report.problems.append(f"CRS {report.crs!r} is not usable")
        return
    if all(v == v and abs(v) != float("inf") for v in b):
        report.bounds_wgs84 = tuple(round(v, 6) for v in b)  # type: ignore[assignment]


def check_catalog(catalog: Catalog) -> list[SourceReport]:
    """A report for every source of every configured layer, plus a line for each layer not configured."""
    reports: list[SourceReport] = []
    for name in LAYER_NAMES:
        sources = catalog.sources(name)
        if not sources:
            reports.append(
                SourceReport(
                    layer=name,
                    display="(not configured)",
                    path="",
                    format=_FORMATS[name][0],
                    found=False,
                    required=name in REQUIRED_LAYERS,
                    problems=["not configured in the catalog"],
                )
            )
            continue
        for source in sources:
            try:
                reports.append(inspect_source(source))
            except DatasetUnavailable as exc:  # a check reports it; only a run retries
                reports.append(
                    SourceReport(
                        layer=name,
                        display=source.display,
                        path=source.path,
                        format=source.format,
                        found=False,
                        required=name in REQUIRED_LAYERS,
                        problems=[exc.detail],
                    )
                )
    return reports
