"""report.html: the screening of one run as a single self-contained, printable page.

The worker renders it from the run's results and legal verdict and stores it as the `report.html`
artifact, so the export (and anyone opening the file offline, years later) gets a readable summary
without the frontend. It references nothing outside itself: styles are inline, the AOI outline is an
inline SVG, there are no scripts, fonts or images to fetch.

Every value comes from the results as computed; a value the run could not compute is shown as "not
computed" with the reason the results give, never as a number. Every piece of text from the results is
HTML-escaped. The key figures carry `data-figure` (name) and `data-value` (the exact value) attributes
so a program can read them back from the page.

The page itself is the Jinja2 template `templates/report.html.j2` (autoescaped; its styles are
`templates/report.css`, both shipped as package data); the sections are still built here as HTML
fragments that escape every value themselves. The renderer knows the sections of the results (analysis.md) and shows their main figures in fixed
tables; anything else a section holds is rendered generically (nested tables), so the report stays
complete when the results gain fields.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any, TypeGuard

import jinja2
import numpy as np
from markupsafe import Markup

from aethera.timestamps import parse_utc

REPORT_MEDIA_TYPE = "text/html; charset=utf-8"
NOT_COMPUTED = "not computed"

# Where each index lives in the results (analysis/results.py: `Results.biodiversity.sensitivity`,
# `Results.resm`, `.ahsm`, `.cim`).
_INDEX_PATHS: dict[str, tuple[str, ...]] = {
    "biodiversity_sensitivity": ("biodiversity", "sensitivity"),
    "resm": ("resm",),
    "ahsm": ("ahsm",),
    "cim": ("cim",),
}
_INDEX_TITLES = {
    "biodiversity_sensitivity": "Biodiversity sensitivity",
    "resm": "RESM: renewable-energy site suitability",
    "ahsm": "AHSM: asset hazard susceptibility",
    "cim": "CIM: cumulative impact",
}
_RECEPTORS = (
    ("nearest_protected_area", "Nearest protected area", "distance_to_protected_km"),
    ("nearest_settlement", "Nearest settlement", "distance_to_settlement_km"),
    ("nearest_water_body", "Nearest water body", "distance_to_water_km"),
)


# --- value formatting ----------------------------------------------------------------------------


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_number(value: float, key: str = "") -> str:
    """A number for reading: thousands separators, 2 decimals (3 significant digits when tiny)."""
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:,.2f}"


def _unit_of(key: str) -> str:
    for suffix, unit in (
        ("_ha", "ha"),
        ("_km", "km"),
        ("_m", "m"),
        ("_pct", "%"),
        ("_tco2e", "t CO₂e"),
        ("_mw", "MW"),
        ("_years", "years"),
        ("_deg", "°"),
        ("_s", "s"),
        ("_km2", "km²"),
    ):
        if key.endswith(suffix):
            return unit
    return ""


def _annotation(key: str) -> bool:
    """A field that explains another (why a value is missing, a caveat): empty when null, not "not
    computed", which would claim a value is missing."""
    return key in ("reason", "note", "notes", "source", "caveat") or key.endswith("_reason")


def _fmt(value: Any, key: str = "") -> str:
    """Escaped HTML for one value; ratios and shares (0-1) read as percentages."""
    if value is None:
        return "" if _annotation(key) else f'<span class="na">{NOT_COMPUTED}</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        if key in ("lon", "lat", "longitude", "latitude") or key.endswith(("_lon", "_lat")):
            return escape(f"{value:.6f}")
        if key == "share" or key.endswith("_ratio") or key.endswith("_share"):
            return f"{value * 100:,.2f} %"
        unit = _unit_of(key)
        return escape(format_number(value, key) + (f" {unit}" if unit else ""))
    if isinstance(value, float):  # NaN or infinity never reach a reader as a number
        return f'<span class="na">{NOT_COMPUTED}</span>'
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return _generic(value)
    if isinstance(value, Sequence):
        return _generic(value)
    return escape(str(value))


_ACRONYMS = {
    "aoi": "AOI",
    "co2": "CO₂",
    "co2e": "CO₂e",
    "tco2e": "t CO₂e",
    "mw": "MW",
    "mwh": "MWh",
    "kwh": "kWh",
    "ghg": "GHG",
    "id": "id",
    "eia": "EIA",
    "pct": "%",
    "resm": "RESM",
    "ahsm": "AHSM",
    "cim": "CIM",
    "km2": "km²",
    "deg": "°",
    "s": "s",
}
_UNIT_WORDS = ("ha", "km", "m", "pct", "tco2e", "mw", "years", "deg", "s", "km2")


def _label(key: str) -> str:
    """`aoi_area_ha` -> "AOI area (ha)": words from the key, its unit suffix in brackets."""
    words = [w for w in key.split("_") if w]
    unit = ""
    if len(words) > 1 and words[-1] in _UNIT_WORDS:
        unit = _ACRONYMS.get(words[-1], words[-1])
        words = words[:-1]
    words = [_ACRONYMS.get(w, w) if w in _ACRONYMS and w != "s" else w for w in words]
    text = " ".join(words)
    text = text[:1].upper() + text[1:]
    return escape(f"{text} ({unit})" if unit else text)


def _get(data: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(step)
    return data


def _first(data: Any, *paths: tuple[str, ...]) -> Any:
    for path in paths:
        value = _get(data, *path)
        if value is not None:
            return value
    return None


def _reason(container: Any, key: str) -> str | None:
    """The reason a results section gives for a missing value (several spellings are in use)."""
    if not isinstance(container, Mapping):
        return None
    for name in (f"{key}_reason", "reason", "unavailable_reason", "missing_reason"):
        if isinstance(container.get(name), str) and (name != "reason" or container.get(key) is None):
            return str(container[name])
    for name in ("reasons", "missing_reasons", "null_reasons"):
        reasons = container.get(name)
        if isinstance(reasons, Mapping) and isinstance(reasons.get(key), str):
            return str(reasons[key])
    value = container.get(key)
    if isinstance(value, Mapping) and isinstance(value.get("reason"), str):
        return str(value["reason"])
    return None


# --- generic rendering ---------------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# A table of rows with this many distinct keys between them would be mostly empty cells (rows x
# columns grows with the square of the rows when each row brings a key of its own): past it, each row
# is drawn as its own key/value table, which keeps the page linear in what the results hold.
MAX_TABLE_COLUMNS = 40


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            for key in row:
                seen.setdefault(key, None)
        columns = list(seen)
    if len(columns) > MAX_TABLE_COLUMNS:
        return "<ul>" + "".join(f"<li>{_generic(row)}</li>" for row in rows) + "</ul>"
    head = "".join(f"<th>{_label(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            cls = ' class="num"' if _is_number(v) else ""
            cells.append(f"<td{cls}>{_fmt(v, c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _generic(value: Any) -> str:
    """Any JSON value as HTML: objects as two-column tables, lists of objects as tables."""
    if isinstance(value, Mapping):
        if not value:
            return '<span class="na">none</span>'
        rows = []
        for k, v in value.items():
            if v is None and _annotation(str(k)):
                continue
            cls = ' class="num"' if _is_number(v) else ""
            rows.append(f"<tr><th>{_label(str(k))}</th><td{cls}>{_fmt(v, str(k))}</td></tr>")
        return f"<table><tbody>{''.join(rows)}</tbody></table>"
    if isinstance(value, (list, tuple)):
        if not value:
            return '<span class="na">none</span>'
        if all(isinstance(v, Mapping) for v in value):
            return _table(value)
        if all(_scalar(v) for v in value):
            return escape(", ".join("n/a" if v is None else str(v) for v in value))
        return "<ul>" + "".join(f"<li>{_fmt(v)}</li>" for v in value) + "</ul>"
    return _fmt(value)


def _rest(section: Mapping[str, Any], shown: Iterable[str], title: str = "Further details") -> str:
    """What a section holds beyond the fields rendered explicitly."""
    hidden = set(shown)  # once, not per key
    extra = {k: v for k, v in section.items() if k not in hidden}
    if not extra:
        return ""
    return f"<h3>{escape(title)}</h3>" + _generic(extra)


# --- key figures ---------------------------------------------------------------------------------


def _index(results: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = _get(results, *_INDEX_PATHS[name])
    return value if isinstance(value, Mapping) else None


def _emission(emissions: Any, *names: str, contains: str | None = None, suffix: str = "") -> Any:
    if not isinstance(emissions, Mapping):
        return None
    for name in names:
        if _is_number(emissions.get(name)):
            return emissions[name]
    if contains:
        for key, value in emissions.items():
            if contains in key and key.endswith(suffix) and _is_number(value):
                return value
    return None


def key_figures(
    results: Mapping[str, Any], legal: Mapping[str, Any] | None, run: Mapping[str, Any]
) -> list[tuple[str, str, Any]]:
    """(name, label, value) of the figures the report opens with; value None when not computed."""
    aoi = results.get("aoi")
    bio = results.get("biodiversity")
    rec = results.get("receptor_distances")
    em = results.get("emissions")
    figures: list[tuple[str, str, Any]] = [
        ("aoi_area_ha", "AOI area", _first(aoi, ("aoi_area_ha",), ("area_ha",))),
        (
            "capacity_mw",
            "Installed capacity",
            _first(
                {"r": results, "run": run},
                ("r", "parameters", "capacity_mw"),
                ("run", "params", "capacity_mw"),
                ("r", "capacity_mw"),
            ),
        ),
        ("protected_overlap_ha", "Protected-area overlap", _get(bio, "protected_overlap_ha")),
        ("protected_overlap_pct", "Share of AOI protected", _get(bio, "protected_overlap_pct")),
    ]
    for key, label, figure in _RECEPTORS:
        figures.append((figure, label, _get(rec, key, "distance_km")))
    figures += [
        (
            "net_balance_tco2e",
            "Net carbon balance (lifetime)",
            _emission(em, "net_balance_tco2e", "net_lifetime_tco2e", "net_tco2e", contains="net", suffix="_tco2e"),
        ),
        (
            "carbon_payback_years",
            "Carbon payback",
            _emission(em, "carbon_payback_years", "payback_years", contains="payback", suffix="_years"),
        ),
    ]
    for name in _INDEX_PATHS:
        index = _index(results, name)
        figures.append((f"{name}_score", f"{_INDEX_TITLES[name].split(':')[0]} score", _get(index, "score")))
    if legal is not None:
        figures.append(("overall_compliant", "Overall compliant", legal.get("overall_compliant")))
        critical = legal.get("critical_violations")
        figures.append(
            ("critical_violations", "Critical violations", len(critical) if isinstance(critical, list) else None)
        )
    return figures


def _figure(name: str, label: str, value: Any) -> dict[str, Any]:
    """One key figure for the template: its name, label, exact value (`data-value`) and shown text."""
    raw = "" if value is None else ("true" if value is True else "false" if value is False else repr(value))
    if name == "overall_compliant" and isinstance(value, bool):
        shown = f'<span class="{"pass" if value else "fail"}">{"yes" if value else "no"}</span>'
    elif name.endswith("_score") and _is_number(value):
        shown = escape(f"{value:.1f} / 100")
    else:
        shown = _fmt(value, name)
    return {"name": name, "label": label, "raw": raw, "shown": Markup(shown)}  # shown: escaped by _fmt


# --- the AOI outline -----------------------------------------------------------------------------

# The outline is a picture OUTLINE_PX wide (or high), so detail finer than the drawing cannot be seen:
# vertices are snapped to a grid of OUTLINE_SNAP_PX and runs of vertices in one cell drawn as one, and
# the whole outline is kept under OUTLINE_MAX_POINTS points (a grid up to OUTLINE_MAX_CELL_PX, then
# every k-th vertex), which bounds both the work and the page whatever the AOI's vertex count (500k
# are accepted). Each step is a vectorised pass over the vertices, and there are at most a few dozen.
OUTLINE_PX = 400.0
OUTLINE_PAD_PX = 10.0
OUTLINE_SNAP_PX = 0.5
OUTLINE_MAX_CELL_PX = 4.0  # 1 % of the drawing: coarser, a grid would flatten the shape itself
OUTLINE_MAX_POINTS = 4000


def _outline_rings(geojson: Any) -> list[Any]:
    """Every ring (a list of positions) of the polygons in a GeoJSON object, in document order."""
    rings: list[Any] = []
    stack = [geojson]
    while stack:  # a stack, not recursion: nested collections cannot exhaust Python's recursion limit
        geometry = stack.pop()
        if not isinstance(geometry, Mapping):
            continue
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        if kind == "Feature":
            stack.append(geometry.get("geometry"))
        elif kind == "FeatureCollection":
            stack.extend(reversed(geometry.get("features") or []))
        elif kind == "GeometryCollection":
            stack.extend(reversed(geometry.get("geometries") or []))
        elif kind == "Polygon" and isinstance(coords, list):
            rings.extend(r for r in coords if isinstance(r, list))
        elif kind == "MultiPolygon" and isinstance(coords, list):
            for polygon in coords:
                if isinstance(polygon, list):
                    rings.extend(r for r in polygon if isinstance(r, list))
    return rings


def _outline_points(rings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of every finite vertex as an (n, 2) array, and the index of the ring of each."""
    flat = [p for ring in rings for p in ring]
    ring_of = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    try:
        lonlat = np.asarray(flat, dtype=float)
        if lonlat.ndim != 2 or lonlat.shape[1] < 2:
            raise ValueError("not a list of positions")
    except (TypeError, ValueError):  # mixed 2-D/3-D positions, or something that is not a position
        lonlat = np.array(
            [
                (_coordinate(p, 0), _coordinate(p, 1))
                if isinstance(p, (list, tuple)) and len(p) >= 2
                else (math.nan, math.nan)
                for p in flat
            ],
            dtype=float,
        ).reshape(-1, 2)
    lonlat = lonlat[:, :2]
    finite = np.isfinite(lonlat).all(axis=1)
    return lonlat[finite], ring_of[finite]


def _coordinate(position: Sequence[Any], i: int) -> float:
    value = position[i]
    return float(value) if _is_number(value) else math.nan


def _ring_starts(ring_of: np.ndarray) -> np.ndarray:
    """The index of the first vertex of each vertex's ring."""
    starts = np.ones(len(ring_of), dtype=bool)
    starts[1:] = ring_of[1:] != ring_of[:-1]
    index = np.arange(len(ring_of))
    return np.maximum.accumulate(np.where(starts, index, 0))


def _thin(xy: np.ndarray, ring_of: np.ndarray, cell_px: float) -> np.ndarray:
    """Which vertices to draw when those in one grid cell, in a row along a ring, are drawn as one (and
    a closing vertex in the cell of the ring's first is left to the path's "Z"); rings left with fewer
    than 3 points (within a cell or two) are not drawn. Linear in the vertices."""
    if not len(xy):
        return np.zeros(0, dtype=bool)
    cell = np.floor(xy / cell_px)
    keep = np.ones(len(xy), dtype=bool)
    keep[1:] = (ring_of[1:] != ring_of[:-1]) | (cell[1:] != cell[:-1]).any(axis=1)
    first = _ring_starts(ring_of)
    last = np.ones(len(xy), dtype=bool)
    last[:-1] = ring_of[1:] != ring_of[:-1]
    closing = last & (first != np.arange(len(xy))) & (cell == cell[first]).all(axis=1)
    keep &= ~closing
    kept: np.ndarray = keep & _rings_of_three(ring_of, keep)
    return kept


def _rings_of_three(ring_of: np.ndarray, keep: np.ndarray) -> np.ndarray:
    counts = np.bincount(ring_of[keep], minlength=int(ring_of.max()) + 1 if len(ring_of) else 0)
    three_or_more: np.ndarray = counts[ring_of] >= 3
    return three_or_more


def _every_kth(ring_of: np.ndarray, k: int) -> np.ndarray:
    """Every k-th vertex of each ring (its first one included)."""
    kth: np.ndarray = (np.arange(len(ring_of)) - _ring_starts(ring_of)) % k == 0
    return kth


def _outline(xy: np.ndarray, ring_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices to draw (at most OUTLINE_MAX_POINTS) and their rings: at most 4 grid passes, then
    log2(vertices) sampling passes, each linear."""
    cell = OUTLINE_SNAP_PX
    keep = _thin(xy, ring_of, cell)
    xy, ring_of = xy[keep], ring_of[keep]
    while len(xy) > OUTLINE_MAX_POINTS and cell < OUTLINE_MAX_CELL_PX:  # coarser: small rings go first
        cell *= 2
        keep = _thin(xy, ring_of, cell)
        xy, ring_of = xy[keep], ring_of[keep]
    k = 2
    thinned, thinned_ring_of = xy, ring_of
    while len(xy) > OUTLINE_MAX_POINTS:  # a ring that zigzags from cell to cell: every k-th vertex
        sample = _every_kth(thinned_ring_of, k)
        xy, ring_of = thinned[sample], thinned_ring_of[sample]
        keep = _thin(xy, ring_of, cell)
        xy, ring_of = xy[keep], ring_of[keep]
        k *= 2
    return xy, ring_of


def _aoi_svg(geojson: Mapping[str, Any] | None) -> str:
    """The AOI outline as inline SVG (lon/lat, x scaled by cos(latitude) so shapes keep proportions),
    simplified to the drawing's resolution."""
    lonlat, ring_of = _outline_points(_outline_rings(geojson))
    if not len(lonlat):
        return ""
    (lon_min, lat_min), (lon_max, lat_max) = lonlat.min(axis=0), lonlat.max(axis=0)
    k = math.cos(math.radians((lat_min + lat_max) / 2))
    w = max(float(lon_max - lon_min) * k, 1e-9)
    h = max(float(lat_max - lat_min), 1e-9)
    scale = (OUTLINE_PX - 2 * OUTLINE_PAD_PX) / max(w, h)
    vw, vh = w * scale + 2 * OUTLINE_PAD_PX, h * scale + 2 * OUTLINE_PAD_PX
    xy = np.column_stack(
        (
            OUTLINE_PAD_PX + (lonlat[:, 0] - lon_min) * (k * scale),
            OUTLINE_PAD_PX + (lat_max - lonlat[:, 1]) * scale,
        )
    )
    xy, ring_of = _outline(xy, ring_of)
    if not len(xy):
        return ""
    breaks = np.flatnonzero(ring_of[1:] != ring_of[:-1]) + 1
    paths = []
    for ring in np.split(xy, breaks):
        paths.append(
            " ".join(("M" if i == 0 else "L") + f"{x:.1f},{y:.1f}" for i, (x, y) in enumerate(ring.tolist())) + " Z"
        )
    return (
        f'<svg class="aoi" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {vw:.1f} {vh:.1f}" role="img" '
        f'aria-label="AOI outline"><path d="{" ".join(paths)}" fill="#4a7fb5" fill-opacity="0.25" '
        f'stroke="#1f4e79" stroke-width="1.5" fill-rule="evenodd"/></svg>'
        '<p class="sub">Outline of the AOI, north up, longitude scaled by the cosine of the latitude.</p>'
    )


# --- sections ------------------------------------------------------------------------------------


def _section_aoi(results: Mapping[str, Any], aoi_geojson: Mapping[str, Any] | None, site_map: str = "") -> str:
    aoi = results.get("aoi")
    out = ["<h2>Area of interest</h2>", site_map or _aoi_svg(aoi_geojson)]
    if not isinstance(aoi, Mapping):
        return "".join(out) + f'<p class="na">{NOT_COMPUTED}</p>'
    out.append(_generic(aoi))
    return "".join(out)


_LC_COLUMNS = ("code", "label", "group_label", "group", "area_ha", "share")
_ZONE_FIGURES = ("area_ha", "classified_ha", "nodata_ha", "outside_layer_ha")


def _class_table(rows: list[Any], title: str) -> str:
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        return f"<h3>{escape(title)}</h3>" + _generic(rows)
    columns = [c for c in _LC_COLUMNS if any(c in row for row in rows)]
    if "group_label" in columns and "group" in columns:
        columns.remove("group")  # the readable label says the same
    columns += [c for c in dict.fromkeys(k for row in rows for k in row) if c not in columns and c != "group"]
    out = f"<h3>{escape(title)}</h3>" + _table(rows, columns)
    area = [row.get("area_ha") for row in rows]
    if area and all(_is_number(a) for a in area):
        out += f'<p class="sub">Sum of the lines: {escape(format_number(sum(area)))} ha.</p>'
    return out


def _land_cover_tables(value: Any, title: str) -> list[str]:
    """Fallback for a shape this renderer does not know: every list of classes, under where it lies."""
    out: list[str] = []
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out.append(_class_table(value, title))
    elif isinstance(value, Mapping):
        scalars = {k: v for k, v in value.items() if _scalar(v)}
        if scalars:
            out.append(f"<h3>{escape(title)}</h3>" + _generic(scalars))
        for key, sub in value.items():
            if not _scalar(sub):
                out += _land_cover_tables(sub, f"{title}: {key.replace('_', ' ')}")
    return out


def _zone(zone: Any, title: str) -> list[str]:
    if isinstance(zone, list):  # a bare list of classes
        return [_class_table(zone, title)]
    if not isinstance(zone, Mapping):
        return _land_cover_tables(zone, title)
    out = [f"<h3>{escape(title)}</h3>", _generic({k: zone[k] for k in _ZONE_FIGURES if k in zone})]
    if "classes" in zone:
        out.append(_class_table(zone["classes"] or [], "CORINE classes"))
    if zone.get("groups"):
        out.append(_class_table(zone["groups"], "Level-1 groups"))
    rest = {k: v for k, v in zone.items() if k not in (*_ZONE_FIGURES, "classes", "groups", "zone")}
    if rest:
        out.append(_generic(rest))
    return out


def _section_land_cover(results: Mapping[str, Any]) -> str:
    lc = results.get("land_cover")
    out = ["<h2>Land cover</h2>"]
    if not isinstance(lc, Mapping):
        reason = _reason(results, "land_cover")
        return out[0] + f'<p class="na">{NOT_COMPUTED}{": " + escape(reason) if reason else ""}</p>'
    if "aoi" not in lc:
        return "".join(out + _land_cover_tables(lc, "Land cover"))
    meta = {k: v for k, v in lc.items() if _scalar(v) and k != "buffer_reason"}
    out.append(_generic(meta))
    out += _zone(lc["aoi"], "Inside the AOI")
    buffer_km = lc.get("buffer_km")
    ring = f"Buffer ring ({format_number(buffer_km)} km around the AOI)" if _is_number(buffer_km) else "Buffer ring"
    if lc.get("buffer") is not None:
        out += _zone(lc["buffer"], ring)
    else:
        reason = lc.get("buffer_reason")
        out.append(f'<h3>{escape(ring)}</h3><p class="na">{NOT_COMPUTED}{": " + escape(reason) if reason else ""}</p>')
    if isinstance(lc.get("ratios"), Mapping) and lc["ratios"]:
        ratios = {f"{k}_share": v for k, v in lc["ratios"].items()}  # fractions 0..1, shown as percentages
        coverage = lc.get("coverage_ratio")
        title = "Shares of the AOI's covered land"
        if _is_number(coverage) and coverage < 1:
            title += f" ({format_number(100 * coverage)} % of the AOI has land-cover data)"
        out.append(f"<h3>{escape(title)}</h3>" + _generic(ratios))
    out.append(_rest(lc, {*meta, "aoi", "buffer", "buffer_reason", "ratios"}))
    return "".join(out)


_SITE_LISTS = (
    ("sites_overlapping", "Sites the AOI overlaps"),
    ("intersecting_sites", "Sites the AOI overlaps"),
    ("sites_in_buffer", "Sites within the zone of influence"),
)


def _section_protected(results: Mapping[str, Any]) -> str:
    bio = results.get("biodiversity")
    out = ["<h2>Protected areas</h2>"]
    if not isinstance(bio, Mapping):
        return out[0] + f'<p class="na">{NOT_COMPUTED}</p>'
    if bio.get("available") is False:
        out.append(f'<p class="na">{NOT_COMPUTED}: {escape(str(bio.get("reason") or "no protected-area layer"))}</p>')
    # score and category mirror the sensitivity index, shown with its drivers under the indices
    mirrored = ("available", "sensitivity_reason", "score", "category")
    summary = {k: v for k, v in bio.items() if _scalar(v) and k not in mirrored}
    out.append(_generic(summary))
    shown = {*summary, *mirrored, "sensitivity"}
    for key, title in _SITE_LISTS:
        if key in bio:
            shown.add(key)
            out.append(f"<h3>{title}</h3>")
            out.append(_generic(bio[key]) if bio[key] else '<p class="na">none</p>')
    out.append(_rest(bio, shown))
    return "".join(out)


def _section_receptors(results: Mapping[str, Any]) -> str:
    rec = results.get("receptor_distances")
    out = ["<h2>Receptor distances</h2>"]
    if not isinstance(rec, Mapping):
        return out[0] + f'<p class="na">{NOT_COMPUTED}</p>'
    rows = []
    for key, label, _figure in _RECEPTORS:
        item = rec.get(key)
        name = _get(item, "receptor_name") or _get(item, "name")
        ident = _get(item, "receptor_id")
        distance = _get(item, "distance_km")
        kind = key.removeprefix("nearest_")
        reason = _reason(rec, key) or _reason(rec, kind)
        if distance is None:
            shown = f'<span class="na">{NOT_COMPUTED}{": " + escape(reason) if reason else ""}</span>'
            reason = None
        else:
            shown = _fmt(distance, "distance_km")
        notes = []
        item_kind = _get(item, "kind")
        if item_kind:
            notes.append(escape(str(item_kind)))
        population = _get(item, "population")
        if _is_number(population):
            notes.append(f"population {escape(format_number(population))}")
        if _get(item, "source") == "land_cover_fallback":
            notes.append("from CORINE land-cover classes (no dedicated layer)")
        if reason:
            notes.append(escape(reason))
        rows.append(
            f"<tr><th>{escape(label)}</th><td>{_fmt(name) if name is not None else ''}"
            f"{' (' + escape(str(ident)) + ')' if ident is not None else ''}</td>"
            f'<td class="num">{shown}</td><td>{"; ".join(notes)}</td></tr>'
        )
    out.append(
        "<table><thead><tr><th>Receptor</th><th>Name (id)</th><th>Distance from the AOI boundary</th>"
        f"<th>Note</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    counts = rec.get("counts")
    if isinstance(counts, list) and counts:
        out.append("<h3>Receptors near the AOI boundary</h3>" + _generic(counts))
    listed = [k for k, _l, _f in _RECEPTORS] + ["reasons", "missing_reasons", "null_reasons", "counts"]
    out.append(_rest(rec, listed, "Further details"))
    return "".join(out)


def _section_terrain(results: Mapping[str, Any]) -> str:
    terrain = results.get("terrain")
    if not isinstance(terrain, Mapping):
        return ""
    if terrain.get("available") is False:
        reason = terrain.get("reason") or "no elevation layer"
        return f'<h2>Terrain</h2><p class="na">{NOT_COMPUTED}: {escape(str(reason))}</p>'
    return "<h2>Terrain</h2>" + _generic({k: v for k, v in terrain.items() if k not in ("available", "reason")})


_ELIGIBILITY_RULE_COLUMNS = (
    "rule",
    "status",
    "excluded_ha",
    "excluded_share",
    "exclusive_ha",
    "method",
    "source",
    "reason",
)


def _section_eligibility(results: Mapping[str, Any]) -> str:
    """Where the project could be built: the eligible share, the binding constraints, rule by rule."""
    el = results.get("eligibility")
    if not isinstance(el, Mapping):
        return ""
    out = ["<h2>Land eligibility</h2>"]
    summary = {
        k: el.get(k)
        for k in (
            "technology",
            "eligible_ha",
            "eligible_share",
            "excluded_ha",
            "overlap_ha",
            "capacity_mw",
            "mw_per_ha",
            "confidence",
            "upper_bound",
            "crs",
            "method",
        )
        if k in el
    }
    out.append(_generic(summary))
    binding = el.get("binding_constraints")
    if isinstance(binding, list) and binding:
        out.append(f"<p>Binding constraints, largest exclusive area first: {escape(', '.join(map(str, binding)))}.</p>")
    rules = [r for r in el.get("rules") or [] if isinstance(r, Mapping)]
    if rules:
        out.append(
            "<h3>Rules</h3>" + _table(rules, [c for c in _ELIGIBILITY_RULE_COLUMNS if any(c in r for r in rules)])
        )
    out.append(_rest(el, {*summary, "binding_constraints", "rules"}))
    return "".join(out)


def _section_emissions(results: Mapping[str, Any]) -> str:
    em = results.get("emissions")
    out = ["<h2>Emissions</h2>"]
    if not isinstance(em, Mapping):
        return out[0] + f'<p class="na">{NOT_COMPUTED}</p>'
    scalars = {k: v for k, v in em.items() if _scalar(v)}
    out.append(_generic(scalars))
    out.append(_rest(em, scalars, "Factors and sources"))
    details = results.get("emissions_details")
    if isinstance(details, Mapping) and details:
        out.append(_rest(details, (), "Factors and sources"))
    return "".join(out)


def _section_kpis(results: Mapping[str, Any]) -> str:
    kpis = results.get("kpis")
    if kpis is None:
        return ""
    out = ["<h2>Indicators</h2>"]
    items: list[Mapping[str, Any]] = []
    definitions = results.get("kpi_definitions")
    if isinstance(kpis, Mapping) and isinstance(definitions, Mapping):
        # the published shape: kpis holds the values, kpi_definitions their unit, definition and caveats
        items = [
            {
                "indicator": k.replace("_", " "),
                "value": v,
                **(d if isinstance(d := definitions.get(k), Mapping) else {}),
            }
            for k, v in kpis.items()
        ]
    elif isinstance(kpis, Mapping) and all(isinstance(v, Mapping) for v in kpis.values()):
        items = [{"indicator": k.replace("_", " "), **v} for k, v in kpis.items()]
    elif isinstance(kpis, list) and all(isinstance(v, Mapping) for v in kpis):
        items = kpis
    if items:
        preferred = ["indicator", "name", "value", "unit", "definition"]
        columns = [c for c in preferred if any(c in row for row in items)]
        columns += [c for c in dict.fromkeys(k for row in items for k in row) if c not in columns]
        out.append(_table(items, columns))
    else:
        out.append(_generic(kpis))
    return "".join(out)


def _section_indices(results: Mapping[str, Any]) -> str:
    out = ["<h2>Indices and their drivers</h2>"]
    for name, title in _INDEX_TITLES.items():
        index = _index(results, name)
        out.append(f"<h3>{escape(title)}</h3>")
        if index is None:
            out.append(f'<p class="na">{NOT_COMPUTED}</p>')
            continue
        score = index.get("score")
        category = index.get("category")
        confidence = index.get("confidence")
        model = index.get("model") if isinstance(index.get("model"), Mapping) else {}
        out.append(
            "<p>Score: <strong>"
            + (escape(f"{score:.1f} / 100") if _is_number(score) else f'<span class="na">{NOT_COMPUTED}</span>')
            + "</strong>"
            + (f"; category: <strong>{escape(str(category).replace('_', ' '))}</strong>" if category else "")
            + (f"; confidence: {escape(f'{confidence:.2f}')}" if _is_number(confidence) else "")
            + (f"; model {escape(str(model.get('name', '')))} {escape(str(model.get('version', '')))}" if model else "")
            + "</p>"
        )
        drivers = index.get("drivers")
        if isinstance(drivers, list) and drivers:
            columns = ["feature", "value", "contribution", "weight", "direction", "note"]
            columns = [c for c in columns if any(isinstance(d, Mapping) and c in d for d in drivers)]
            ranked = sorted(
                (d for d in drivers if isinstance(d, Mapping)),
                key=lambda d: -abs(d["contribution"]) if _is_number(d.get("contribution")) else 0.0,
            )
            out.append(_table(ranked, columns))
        components = index.get("components")
        if isinstance(components, Mapping) and components:
            out.append("<p>Components:</p>" + _generic(components))
    return "".join(out)


def _status_word(status: Mapping[str, Any]) -> tuple[str, str]:
    state = status.get("status")
    if state == "not_evaluable" or (status.get("passed") is None and state is None):
        return "not evaluable", "neutral"
    if status.get("passed") is True:
        return "passed", "pass"
    if status.get("passed") is False:
        return "triggered", "fail"
    return escape(str(state)), "neutral"


def _references(status: Mapping[str, Any]) -> str:
    refs = status.get("references") or _get(status, "details", "references")
    if not refs:
        return ""
    if isinstance(refs, str):
        refs = [refs]
    return '<ul class="refs">' + "".join(f"<li>{_fmt(r)}</li>" for r in refs) + "</ul>"


_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
_STATUS_ORDER = {"triggered": 0, "not evaluable": 1, "passed": 2}


def _summary_text(summary: Any) -> str:
    if isinstance(summary, Mapping):
        parts = [
            f"{summary[k]} {k.replace('_', ' ')}"
            for k in ("passed", "triggered", "not_evaluable")
            if _is_number(summary.get(k))
        ]
        total = summary.get("total")
        return (f"{total} rules checked: " if _is_number(total) else "") + ", ".join(parts)
    return str(summary) if summary else ""


def _habitats(art63: Mapping[str, Any]) -> str:
    verdict = str(art63.get("verdict") or NOT_COMPUTED)
    css = {"not required": "pass", "appropriate assessment required": "fail"}.get(verdict, "")
    out = [
        "<h3>Habitats Directive Art. 6(3): appropriate assessment</h3>",
        f'<div class="verdict {css}"><strong>{escape(verdict[:1].upper() + verdict[1:])}</strong>'
        + (f"<br>{escape(str(art63['reason']))}" if art63.get("reason") else "")
        + (f'<ul class="refs"><li>{escape(str(art63["reference"]))}</li></ul>' if art63.get("reference") else "")
        + "</div>",
    ]
    sites = art63.get("natura2000_sites")
    if sites is None:
        out.append(f'<p class="na">Natura 2000 sites in the zone of influence: {NOT_COMPUTED}</p>')
    elif sites:
        out.append("<p>Natura 2000 sites in the zone of influence:</p>" + _generic(sites))
    else:
        out.append("<p>No Natura 2000 site in the zone of influence.</p>")
    return "".join(out)


def _annex_iii(findings: Any) -> str:
    out = ["<h3>EIA Directive 2014/52/EU, Annex III criteria the findings touch</h3>"]
    if not isinstance(findings, list) or not findings:
        return out[0] + '<p class="na">none</p>'
    for f in findings:
        if not isinstance(f, Mapping):
            out.append(_generic(f))
            continue
        head = " ".join(escape(str(f[k])) for k in ("criterion", "section") if f.get(k))
        out.append(f"<p><strong>{head}</strong> {escape(str(f.get('text') or ''))}</p>")
        evidence = f.get("evidence")
        if isinstance(evidence, list) and evidence:
            rows = [
                {k: e.get(k) for k in ("rule_id", "severity", "message")} for e in evidence if isinstance(e, Mapping)
            ]
            out.append(_table(rows))
    return "".join(out)


def _section_legal(legal: Mapping[str, Any] | None) -> str:
    out = ["<h2>Legal screening</h2>"]
    if legal is None:
        return out[0] + f'<p class="na">{NOT_COMPUTED}: the run stored no legal verdict</p>'
    compliant = legal.get("overall_compliant")
    cls = "pass" if compliant is True else "fail" if compliant is False else ""
    verdict = (
        "Compliant" if compliant is True else "Not compliant" if compliant is False else "Compliance not determinable"
    )
    packs = legal.get("packs_applied")
    out.append(
        f'<div class="verdict {cls}"><strong>{verdict}</strong>'
        f" (country {escape(str(legal.get('country_code') or 'n/a'))})"
        + (f"<br>{escape(str(legal['overall_reason']))}" if legal.get("overall_reason") else "")
        + (f"<br>{escape(_summary_text(legal.get('summary')))}" if legal.get("summary") else "")
        + (f"<br>Rule packs: {escape(', '.join(map(str, packs)))}" if isinstance(packs, list) and packs else "")
        + "</div>"
    )
    screening = legal.get("screening")
    if isinstance(screening, Mapping):
        art63 = screening.get("habitats_directive_art6_3")
        if isinstance(art63, Mapping):
            out.append(_habitats(art63))
        if "eia_annex_iii" in screening:
            out.append(_annex_iii(screening["eia_annex_iii"]))
        rest = {k: v for k, v in screening.items() if k not in ("habitats_directive_art6_3", "eia_annex_iii")}
        if rest:
            out.append("<h3>Screening</h3>" + _generic(rest))
    statuses = legal.get("statuses")
    if isinstance(statuses, list) and statuses:
        rows = []
        ordered = sorted(
            (st for st in statuses if isinstance(st, Mapping)),
            key=lambda st: (_STATUS_ORDER.get(_status_word(st)[0], 3), _SEVERITY_ORDER.get(str(st.get("severity")), 5)),
        )
        for st in ordered:
            word, css = _status_word(st)
            heuristic = _get(st, "details", "heuristic")
            rows.append(
                f"<tr><td>{escape(str(st.get('rule_id', '')))}</td>"
                f"<td>{escape(str(st.get('rule_name', '')))}"
                + (' <span class="na">(screening heuristic)</span>' if heuristic is True else "")
                + f"{_references(st)}</td>"
                f'<td class="{css}">{word}</td><td>{escape(str(st.get("severity", "")))}</td>'
                f"<td>{escape(str(st.get('category', '')))}</td><td>{escape(str(st.get('message', '')))}</td></tr>"
            )
        out.append(
            "<h3>Rules (triggered first)</h3><table><thead><tr><th>Rule</th><th>Name and legal references</th>"
            "<th>Result</th><th>Severity</th><th>Category</th><th>Finding</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )
    notes = legal.get("notes")
    if isinstance(notes, list) and notes:
        out.append("<h3>Notes</h3>" + "<ul>" + "".join(f"<li>{_fmt(n)}</li>" for n in notes) + "</ul>")
    return "".join(out)


def _section_provenance(results: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    out = ["<h2>Data and method</h2>"]
    warnings = results.get("warnings")
    if warnings:
        out.append("<h3>Warnings</h3>" + _generic(warnings))
    if results.get("datasets") is not None:
        out.append("<h3>Datasets</h3>" + _generic(results["datasets"]))
    if results.get("step_durations_s") is not None:
        out.append("<h3>Step durations</h3>" + _generic(results["step_durations_s"]))
    params = run.get("params") if isinstance(run.get("params"), Mapping) else None
    if params or run.get("config"):
        shown = dict(params or {})
        if run.get("config"):
            shown["config"] = run["config"]
        out.append("<h3>Run parameters</h3>" + _generic(shown))
    return "".join(out) if len(out) > 1 else ""


# --- the page ------------------------------------------------------------------------------------


def render_report(
    results: Mapping[str, Any],
    legal: Mapping[str, Any] | None,
    run: Mapping[str, Any],
    *,
    aoi_geojson: Mapping[str, Any] | None = None,
    generated_at: datetime | None = None,
    site_map: str = "",
) -> bytes:
    """The report as UTF-8 HTML bytes.

    `results` and `legal` are the JSON objects the run stored (results.json, legal.json), `run` the run
    record; `aoi_geojson` (optional) adds an outline of the AOI, `site_map` (optional, the inline SVG of
    `report_map.site_map_svg`) replaces that outline with the site map. `generated_at` is the time shown in
    the heading (default: the record's `finished_at`, when set); nothing else in the page depends on the
    clock, so the same inputs always give the same bytes.
    """
    run_id = str(run.get("run_id") or results.get("run_id") or "")
    project_type = run.get("project_type") or results.get("project_type")
    country = _get(run, "params", "country") or (legal or {}).get("country_code")
    when = generated_at or parse_utc(run.get("finished_at"))
    subtitle = [
        str(x)
        for x in (
            f"run {run_id}" if run_id else None,
            f"project {run.get('project_id') or results.get('project_id')}"
            if run.get("project_id") or results.get("project_id")
            else None,
            f"{project_type}" if project_type else None,
            f"country {country}" if country else None,
            f"completed {when.isoformat(timespec='seconds')}" if when else None,
        )
        if x
    ]
    sections = [
        _section_aoi(results, aoi_geojson, site_map),
        _section_land_cover(results),
        _section_protected(results),
        _section_receptors(results),
        _section_terrain(results),
        _section_eligibility(results),
        _section_emissions(results),
        _section_kpis(results),
        _section_indices(results),
        _section_legal(legal),
        _section_provenance(results, run),
    ]
    page = _template().render(
        title=f"Screening report {run_id}".strip(),
        subtitle=subtitle,
        figures=[_figure(*f) for f in key_figures(results, legal, run)],
        sections=[Markup(section) for section in sections],  # HTML the section builders escaped
    )
    return page.encode("utf-8")


@functools.cache
def _template() -> jinja2.Template:
    """The page template, loaded once per process from the package's `templates` folder."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aethera", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2")
