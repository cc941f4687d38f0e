"""One row per site of a batch, read from each site's run (results.json, legal.json), ranked, and
written as JSON rows, CSV or GeoJSON.

Results are read defensively: only the index objects (`resm`, `ahsm`, `cim`, each `{score, category}`),
`biodiversity.sensitivity` and the protected-area figures of `biodiversity`, whatever else the results
document holds; a value a run did not produce is null (CSV: empty), and a site whose run did not
complete has only its name, area, status and error.

Default order (`DEFAULT_SORT`), the most promising sites first: completed runs before the others; then
fewer critical legal findings; a smaller share of the site in protected areas; a lower biodiversity
sensitivity; a lower cumulative impact (CIM); a farther nearest Natura 2000 site; then the site's
position in the collection. `?sort=` takes a comma-separated list of column names, each optionally
prefixed with `-` for descending; nulls always go last.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aethera.errors import InvalidInput

# (column, what it is): the units are in the names
COLUMNS: tuple[tuple[str, str], ...] = (
    ("rank", "position in this order, from 1"),
    ("index", "the feature's position in the submitted collection, from 0"),
    ("name", "the site's name (the batch's name_property, else its index)"),
    ("run_id", "the site's run"),
    ("status", "the run's status"),
    ("area_ha", "AOI area, ha (equal-area CRS)"),
    ("protected_overlap_ha", "area inside protected areas, ha"),
    ("protected_overlap_pct", "share of the AOI inside protected areas, %"),
    ("natura2000_overlap_pct", "share of the AOI inside Natura 2000 sites, %"),
    ("nearest_natura2000_code", "nearest Natura 2000 site within the search distance"),
    ("nearest_natura2000_name", "its name"),
    ("nearest_natura2000_distance_m", "distance to it, m (0 when the AOI overlaps it)"),
    ("resm_score", "renewable energy suitability, 0-100"),
    ("resm_category", "its category"),
    ("ahsm_score", "natural hazard susceptibility, 0-100"),
    ("ahsm_category", "its category"),
    ("cim_score", "cumulative impact, 0-100"),
    ("cim_category", "its category"),
    ("biodiversity_sensitivity_score", "biodiversity sensitivity, 0-100"),
    ("biodiversity_sensitivity_category", "its category"),
    ("overall_compliant", "legal screening: no critical rule triggered"),
    ("critical_findings", "number of critical legal findings"),
    ("reused_from", "the run whose results were reused, if any"),
    ("error", "why the run did not complete"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
DEFAULT_SORT = (
    "completed",
    "critical_findings",
    "protected_overlap_pct",
    "biodiversity_sensitivity_score",
    "cim_score",
    "-nearest_natura2000_distance_m",
    "index",
)
_SORTABLE = set(COLUMN_NAMES) - {"rank"}


def _get(doc: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _index_fields(row: dict[str, Any], prefix: str, obj: Any) -> None:
    row[f"{prefix}_score"] = _num(_get(obj, "score"))
    category = _get(obj, "category")
    row[f"{prefix}_category"] = category if isinstance(category, str) else None


def _nearest_natura(biodiversity: Any) -> tuple[str | None, str | None, float | None]:
    """The nearest Natura 2000 site among the sites the run found (overlapping or within its search)."""
    best: tuple[float, str, str | None] | None = None

    def overlapping(site: Mapping[str, Any]) -> float | None:
        return 0.0

    def recorded(site: Mapping[str, Any]) -> float | None:
        return _num(site.get("distance_km"))

    groups: tuple[tuple[str, Callable[[Mapping[str, Any]], float | None]], ...] = (
        ("sites_overlapping", overlapping),
        ("sites_not_overlapped", recorded),
        ("sites_in_buffer", recorded),
    )
    for group, distance_of in groups:
        sites = _get(biodiversity, group)
        if not isinstance(sites, list):
            continue
        for site in sites:
            if not isinstance(site, Mapping) or site.get("natura2000") is not True:
                continue
            km = distance_of(site)
            if km is None:
                continue
            code = str(site.get("site_code") or "")
            if best is None or (km, code) < (best[0], best[1]):
                name = site.get("name")
                best = (km, code, name if isinstance(name, str) else None)
    if best is None:
        return None, None, None
    return best[1] or None, best[2], round(best[0] * 1000.0, 1)


def site_row(site: Mapping[str, Any], run: Mapping[str, Any] | None, results: Any, legal: Any) -> dict[str, Any]:
    """One row: the site (index, name, area), its run's state, and what its results say."""
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(index=site["index"], name=site["name"], run_id=site.get("run_id"), area_ha=site.get("area_ha"))
    if run is None:
        row["status"], row["error"] = "FAILED", site.get("error") or "the run was not created"
        return row
    row["status"] = run.get("status")
    row["error"] = run.get("error")
    row["reused_from"] = run.get("reused_from")
    bio = _get(results, "biodiversity")
    row["protected_overlap_ha"] = _num(_get(bio, "protected_overlap_ha"))
    row["protected_overlap_pct"] = _num(_get(bio, "protected_overlap_pct"))
    row["natura2000_overlap_pct"] = _num(_get(bio, "natura2000_overlap_pct"))
    if isinstance(bio, Mapping) and bio.get("available") is not False:
        code, name, distance_m = _nearest_natura(bio)
        row.update(nearest_natura2000_code=code, nearest_natura2000_name=name, nearest_natura2000_distance_m=distance_m)
    area = _num(_get(results, "aoi", "aoi_area_ha"))
    if area is not None:
        row["area_ha"] = area
    for name in ("resm", "ahsm", "cim"):
        _index_fields(row, name, _get(results, name))
    _index_fields(row, "biodiversity_sensitivity", _get(bio, "sensitivity"))
    compliant = _get(legal, "overall_compliant")
    row["overall_compliant"] = compliant if isinstance(compliant, bool) else None
    critical = _get(legal, "critical_violations")
    row["critical_findings"] = len(critical) if isinstance(critical, list) else None
    return row


def parse_sort(raw: str | None) -> tuple[str, ...]:
    if raw is None or raw == "":
        return DEFAULT_SORT
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys or len(keys) > 10:
        raise InvalidInput("sort takes 1 to 10 comma-separated column names", field="sort")
    for key in keys:
        if key.lstrip("-") not in _SORTABLE and key.lstrip("-") != "completed":
            raise InvalidInput(
                f"sort: no column {key[:40]!r}; columns are {', '.join(sorted(_SORTABLE))}", field="sort"
            )
    return keys


def sort_value(row: Mapping[str, Any], name: str) -> Any:
    """What a row is ordered by for the sort key `name` (without its `-`); None sorts last."""
    if name == "completed":
        return 0 if row["status"] == "COMPLETED" else 1
    v = row.get(name)
    return -1 if v is True else 0 if v is False else v  # compliant (True) first


def rank(rows: list[dict[str, Any]], sort: Sequence[str]) -> list[dict[str, Any]]:
    """`rows` in the order `sort` names (stable; nulls last whatever the direction), each with its rank."""
    ordered = list(rows)
    for key in reversed(sort):
        desc = key.startswith("-")
        name = key.lstrip("-")

        def value(row: dict[str, Any], name: str = name) -> Any:
            return sort_value(row, name)

        present = [r for r in ordered if value(r) is not None]
        missing = [r for r in ordered if value(r) is None]
        present.sort(key=value, reverse=desc)
        ordered = present + missing
    for i, row in enumerate(ordered, 1):
        row["rank"] = i
    return ordered


def csv_cells(row: Mapping[str, Any]) -> list[Any]:
    """One row's CSV cells in column order: null as empty, booleans as true/false."""
    return [
        "" if row.get(c) is None else ("true" if row[c] is True else "false" if row[c] is False else row[c])
        for c in COLUMN_NAMES
    ]


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMN_NAMES)
    for row in rows:
        writer.writerow(csv_cells(row))
    return out.getvalue()


def geojson_feature(row: Mapping[str, Any], geometry: Any) -> dict[str, Any]:
    """One site of the GeoJSON summary: its AOI (EPSG:4326) with its row as properties."""
    return {"type": "Feature", "geometry": geometry, "properties": {c: row.get(c) for c in COLUMN_NAMES}}


def to_geojson(rows: Sequence[Mapping[str, Any]], geometries: Mapping[str, Any]) -> dict[str, Any]:
    """A FeatureCollection: each site's AOI (EPSG:4326) with its row as properties."""
    features = [geojson_feature(row, geometries.get(str(row.get("run_id")))) for row in rows]
    return {"type": "FeatureCollection", "features": features}
