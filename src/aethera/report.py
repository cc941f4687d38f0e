"""report.html: the screening of one run as a single self-contained, printable page.

The worker renders it from the run's typed `Results` and `LegalResult` and stores it as the
`report.html` artifact, so the export (and anyone opening the file offline, years later) gets a readable
summary without the frontend. It references nothing outside itself: styles are inline, the AOI outline
or site map is an inline SVG, there are no scripts, fonts or images to fetch.

This module prepares a view model: every section as a typed object of plain text, numbers formatted
with their units, and the value trees (`Cell`, `Table`, `Pairs`, `Items`) the templates draw. The page
itself is Jinja2 templates under `templates/` (autoescaped: every piece of text from the results is
escaped by the template; only the SVG pictures built here are marked safe). A value the run could not
compute is shown as "not computed" with the reason the results give, never as a number. The key figures
carry `data-figure` (name) and `data-value` (the exact value) attributes so a program can read them
back from the page.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import jinja2
import msgspec
from markupsafe import Markup

from aethera.analysis.indices import IndexResult
from aethera.analysis.results import (
    EMISSION_DETAIL_KEYS,
    Biodiversity,
    Eligibility,
    Emissions,
    LandCover,
    LandCoverZone,
    ReceptorDistances,
    Results,
    Terrain,
)
from aethera.legal.engine import LegalResult, RuleStatus, Summary
from aethera.legal.screening import AnnexFinding, HabitatsScreening
from aethera.report_outline import OUTLINE_MAX_POINTS, aoi_svg
from aethera.timestamps import parse_utc

__all__ = ["MAX_TABLE_COLUMNS", "NOT_COMPUTED", "OUTLINE_MAX_POINTS", "REPORT_MEDIA_TYPE", "ReportRun", "render_report"]

REPORT_MEDIA_TYPE = "text/html; charset=utf-8"
NOT_COMPUTED = "not computed"

_INDEX_TITLES = {
    "biodiversity_sensitivity": "Biodiversity sensitivity",
    "resm": "RESM: renewable-energy site suitability",
    "ahsm": "AHSM: asset hazard susceptibility",
    "cim": "CIM: cumulative impact",
}


class ReportRun(msgspec.Struct, kw_only=True):
    """What the report shows of the run record (`models.RunRecord`); decoded once from the record's
    plain data, so a partial record (a test, a bench) reads as empty fields, not as a KeyError."""

    run_id: str = ""
    project_id: str | None = None
    project_type: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    finished_at: str | None = None


# --- the value trees the templates draw (templates/report_values.html.j2) -------------------------


@dataclass(frozen=True)
class Cell:
    """One value as text; `na` marks a value that is not there (styled apart), `num` a number."""

    kind: ClassVar[str] = "cell"
    text: str
    na: bool = False
    num: bool = False
    css: str = ""


@dataclass(frozen=True)
class Table:
    kind: ClassVar[str] = "table"
    columns: list[str]
    rows: list[list[Value]]


@dataclass(frozen=True)
class Pairs:
    """A two-column table: label -> value."""

    kind: ClassVar[str] = "pairs"
    rows: list[tuple[str, Value]]


@dataclass(frozen=True)
class Items:
    kind: ClassVar[str] = "items"
    items: list[Value]


Value = Cell | Table | Pairs | Items
NONE = Cell("none", na=True)


def _not_computed(reason: str | None = None) -> Cell:
    return Cell(f"{NOT_COMPUTED}: {reason}" if reason else NOT_COMPUTED, na=True)


# --- value formatting ----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_number(value: float) -> str:
    """A number for reading: thousands separators, 2 decimals (3 significant digits when tiny)."""
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:,.2f}"


_UNITS = {
    "ha": "ha",
    "km": "km",
    "m": "m",
    "pct": "%",
    "tco2e": "t CO₂e",
    "mw": "MW",
    "years": "years",
    "deg": "°",
    "s": "s",
    "km2": "km²",
}
_ACRONYMS = {
    "aoi": "AOI",
    "co2": "CO₂",
    "co2e": "CO₂e",
    "tco2e": "t CO₂e",
    "mw": "MW",
    "mwh": "MWh",
    "kwh": "kWh",
    "ghg": "GHG",
    "eia": "EIA",
    "pct": "%",
    "resm": "RESM",
    "ahsm": "AHSM",
    "cim": "CIM",
    "km2": "km²",
    "deg": "°",
}


def _unit_of(key: str) -> str:
    return _UNITS.get(key.rsplit("_", 1)[-1], "") if "_" in key else ""


def _label(key: str) -> str:
    """`aoi_area_ha` -> "AOI area (ha)": words from the key, its unit suffix in brackets."""
    words = [w for w in key.split("_") if w]
    unit = ""
    if len(words) > 1 and words[-1] in _UNITS:
        unit = _ACRONYMS.get(words[-1], words[-1])
        words = words[:-1]
    text = " ".join(_ACRONYMS.get(w, w) for w in words)
    text = text[:1].upper() + text[1:]
    return f"{text} ({unit})" if unit else text


def _annotation(key: str) -> bool:
    """A field that explains another (why a value is missing, a caveat): left out when null, not shown
    as "not computed", which would claim a value is missing."""
    return key in ("reason", "note", "notes", "source", "caveat") or key.endswith("_reason")


def _cell(value: Any, key: str = "") -> Cell:
    """A scalar as a cell; ratios and shares (0-1) read as percentages, NaN as not computed."""
    if value is None:
        return Cell("") if _annotation(key) else _not_computed()
    if isinstance(value, bool):
        return Cell("yes" if value else "no")
    if _is_number(value):
        if key in ("lon", "lat", "longitude", "latitude") or key.endswith(("_lon", "_lat")):
            return Cell(f"{value:.6f}", num=True)
        if key == "share" or key.endswith(("_ratio", "_share")):
            return Cell(f"{value * 100:,.2f} %", num=True)
        unit = _unit_of(key)
        return Cell(format_number(value) + (f" {unit}" if unit else ""), num=True)
    if isinstance(value, float):  # NaN or infinity never reach a reader as a number
        return _not_computed()
    return Cell(str(value))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# A table of rows with this many distinct keys between them would be mostly empty cells (rows x
# columns grows with the square of the rows when each row brings a key of its own): past it, each row
# is drawn as its own key/value table, which keeps the page linear in what it holds.
MAX_TABLE_COLUMNS = 40


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Value:
    """Rows of plain data (a typed list as builtins, or free-form JSON) as a table."""
    if not rows:
        return NONE
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if len(columns) > MAX_TABLE_COLUMNS:
        return Items([_value(row) for row in rows])
    return Table([_label(c) for c in columns], [[_value(row.get(c), c) for c in columns] for row in rows])


def _value(data: Any, key: str = "") -> Value:
    """Plain data as a value tree: objects as two-column tables, lists of objects as tables, lists of
    scalars as one line. For the free-form parts of the results (rule parameters, the run's config) and
    for typed lists turned into builtins."""
    if isinstance(data, msgspec.Struct) or (isinstance(data, list) and data and isinstance(data[0], msgspec.Struct)):
        data = msgspec.to_builtins(data)
    if isinstance(data, Mapping):
        return _pairs(data) if data else NONE
    if isinstance(data, (list, tuple)):
        if not data:
            return NONE
        if all(isinstance(v, Mapping) for v in data):
            return _table(data)
        if all(_scalar(v) for v in data):
            return Cell(", ".join("n/a" if v is None else str(v) for v in data))
        return Items([_value(v) for v in data])
    return _cell(data, key)


def _pairs(data: Mapping[str, Any], keys: Sequence[str] | None = None) -> Pairs:
    """Fields of an object (all, or `keys`) as label -> value; a null annotation is left out."""
    chosen = data.keys() if keys is None else [k for k in keys if k in data]
    return Pairs([(_label(k), _value(data[k], k)) for k in chosen if not (data[k] is None and _annotation(k))])


def _fields(struct: msgspec.Struct, keys: Sequence[str] | None = None, *, without: Sequence[str] = ()) -> Pairs:
    """Fields of a typed result (all of them in declaration order, or `keys`) as label -> value."""
    data = msgspec.to_builtins(struct)
    names = [k for k in (keys or struct.__struct_fields__) if k not in without]
    return _pairs(data, names)


# --- key figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    name: str
    label: str
    raw: str  # the exact value for `data-value` ("" when not computed)
    shown: Cell


def _figure(name: str, label: str, value: float | bool | int | None, reason: str | None = None) -> Figure:
    raw = "" if value is None else ("true" if value is True else "false" if value is False else repr(value))
    if value is None:
        shown = _not_computed(reason)
    elif name == "overall_compliant" and isinstance(value, bool):
        shown = Cell("yes" if value else "no", css="pass" if value else "fail")
    elif name.endswith("_score") and _is_number(value):
        shown = Cell(f"{value:.1f} / 100", num=True)
    else:
        shown = _cell(value, name)
    return Figure(name, label, raw, shown)


def _index(value: Any) -> IndexResult | None:
    """An index as the pipeline filled it (`Results.resm` etc. are typed loosely because the indices
    step fills them late): the typed result, converted once when it arrives as plain data."""
    if value is None or isinstance(value, IndexResult):
        return value
    return msgspec.convert(value, IndexResult)


def _indices(results: Results) -> dict[str, IndexResult | None]:
    return {
        "biodiversity_sensitivity": _index(results.biodiversity.sensitivity),
        "resm": _index(results.resm),
        "ahsm": _index(results.ahsm),
        "cim": _index(results.cim),
    }


def key_figures(results: Results, legal: LegalResult | None, indices: Mapping[str, IndexResult | None]) -> list[Figure]:
    """The figures the report opens with; a figure not computed says so, with its reason."""
    bio, rec, em = results.biodiversity, results.receptor_distances, results.emissions
    figures = [
        _figure("aoi_area_ha", "AOI area", results.aoi.aoi_area_ha),
        _figure("capacity_mw", "Installed capacity", results.parameters.capacity_mw),
        _figure("protected_overlap_ha", "Protected-area overlap", bio.protected_overlap_ha, bio.reason),
        _figure("protected_overlap_pct", "Share of AOI protected", bio.protected_overlap_pct, bio.reason),
    ]
    for kind, label, figure in _RECEPTORS:
        receptor = getattr(rec, f"nearest_{kind}")
        distance = receptor.distance_km if receptor is not None else None
        figures.append(_figure(figure, label, distance, rec.reasons.get(kind)))
    figures += [
        _figure("net_balance_tco2e", "Net carbon balance (lifetime)", em.net_balance_tco2e),
        _figure("carbon_payback_years", "Carbon payback", em.payback_years, em.payback_reason),
    ]
    for name, index in indices.items():
        score = index.score if index is not None else None
        figures.append(_figure(f"{name}_score", f"{_INDEX_TITLES[name].split(':')[0]} score", score))
    if legal is not None:
        figures.append(_figure("overall_compliant", "Overall compliant", legal.overall_compliant))
        figures.append(_figure("critical_violations", "Critical violations", len(legal.critical_violations)))
    return figures


# --- sections ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AoiSection:
    picture: Markup  # the site map, else the outline: SVG built by report_map / report_outline
    summary: Pairs


@dataclass(frozen=True)
class ClassTable:
    title: str
    table: Value
    sum_ha: str | None  # the sum of the lines, shown under the table


@dataclass(frozen=True)
class ZoneView:
    title: str
    figures: Pairs | None = None
    classes: ClassTable | None = None
    groups: ClassTable | None = None
    extra: Pairs | None = None
    missing: Cell | None = None  # the zone was not computed, with why


@dataclass(frozen=True)
class LandCoverSection:
    meta: Pairs
    zones: list[ZoneView]
    ratios_title: str
    ratios: Pairs | None


_ZONE_FIGURES = ("area_ha", "classified_ha", "nodata_ha", "outside_layer_ha")


def _class_table(rows: list[dict[str, Any]], title: str, columns: Sequence[str]) -> ClassTable:
    total_ha = sum(row["area_ha"] for row in rows)
    return ClassTable(title, _table(rows, columns), f"{format_number(total_ha)} ha" if rows else None)


def _zone(zone: LandCoverZone, title: str) -> ZoneView:
    data = msgspec.to_builtins(zone)
    return ZoneView(
        title,
        figures=_pairs(data, _ZONE_FIGURES),
        classes=_class_table(data["classes"], "CORINE classes", ("code", "label", "group_label", "area_ha", "share")),
        groups=_class_table(data["groups"], "Level-1 groups", ("label", "group", "area_ha", "share"))
        if data["groups"]
        else None,
        extra=_pairs(data, ("covered_ha", "coverage_ratio")),
    )


def _land_cover(lc: LandCover) -> LandCoverSection:
    ring = f"Buffer ring ({format_number(lc.buffer_km)} km around the AOI)"
    zones = [_zone(lc.aoi, "Inside the AOI")]
    zones.append(
        _zone(lc.buffer, ring) if lc.buffer is not None else ZoneView(ring, missing=_not_computed(lc.buffer_reason))
    )
    title = "Shares of the AOI's covered land"
    if lc.coverage_ratio < 1:
        title += f" ({format_number(100 * lc.coverage_ratio)} % of the AOI has land-cover data)"
    ratios = _pairs({f"{k}_share": v for k, v in lc.ratios.items()}) if lc.ratios else None  # fractions, shown as %
    meta = _fields(lc, without=("aoi", "buffer", "buffer_reason", "ratios"))
    return LandCoverSection(meta, zones, title, ratios)


@dataclass(frozen=True)
class ProtectedSection:
    missing: Cell | None  # the layer is not there, with why
    summary: Pairs
    overlapping: Value
    in_buffer: Value
    not_overlapped: Value


_BIODIVERSITY_NOT_IN_SUMMARY = (
    "available",
    "sensitivity",
    "sensitivity_reason",
    "sites_overlapping",
    "sites_in_buffer",
    "sites_not_overlapped",
)


def _protected(bio: Biodiversity) -> ProtectedSection:
    # the sensitivity index and its reason are shown with their drivers under the indices
    return ProtectedSection(
        missing=None if bio.available else _not_computed(bio.reason or "no protected-area layer"),
        summary=_fields(bio, without=_BIODIVERSITY_NOT_IN_SUMMARY),
        overlapping=_value(bio.sites_overlapping),
        in_buffer=_value(bio.sites_in_buffer),
        not_overlapped=_value(bio.sites_not_overlapped),
    )


_RECEPTORS = (
    ("protected_area", "Nearest protected area", "distance_to_protected_km"),
    ("settlement", "Nearest settlement", "distance_to_settlement_km"),
    ("water_body", "Nearest water body", "distance_to_water_km"),
)


@dataclass(frozen=True)
class ReceptorRow:
    label: str
    name: str
    distance: Cell
    notes: list[str]


@dataclass(frozen=True)
class ReceptorsSection:
    rows: list[ReceptorRow]
    counts: Value | None
    further: Pairs


def _receptors(rec: ReceptorDistances) -> ReceptorsSection:
    rows = []
    for kind, label, _figure_name in _RECEPTORS:
        item = getattr(rec, f"nearest_{kind}")
        reason = rec.reasons.get(kind)
        if item is None:
            rows.append(ReceptorRow(label, "", _not_computed(reason), []))
            continue
        notes = [item.kind] if item.kind else []
        if item.population is not None:
            notes.append(f"population {format_number(item.population)}")
        if item.source == "land_cover_fallback":
            notes.append("from CORINE land-cover classes (no dedicated layer)")
        if reason:
            notes.append(reason)
        name = f"{item.receptor_name or ''} ({item.receptor_id})".strip()
        rows.append(ReceptorRow(label, name, _cell(item.distance_km, "distance_km"), notes))
    counts = _value(rec.counts) if rec.counts else None
    further = _fields(rec, ("population_within_1km", "sources", "not_found_within_km"))
    return ReceptorsSection(rows, counts, further)


@dataclass(frozen=True)
class TerrainSection:
    missing: Cell | None
    figures: Pairs


def _terrain(terrain: Terrain) -> TerrainSection:
    if not terrain.available:
        return TerrainSection(_not_computed(terrain.reason or "no elevation layer"), Pairs([]))
    return TerrainSection(None, _fields(terrain, without=("available", "reason")))


@dataclass(frozen=True)
class EligibilitySection:
    summary: Pairs
    binding: str  # the binding constraints, largest exclusive area first ("" when none)
    rules: Value
    further: Pairs


_ELIGIBILITY_SUMMARY = (
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
_ELIGIBILITY_RULE_COLUMNS = ("rule", "status", "excluded_ha", "excluded_share", "exclusive_ha", "method", "source")


def _eligibility(el: Eligibility) -> EligibilitySection:
    rules = [msgspec.to_builtins(r) for r in el.rules]
    return EligibilitySection(
        summary=_fields(el, _ELIGIBILITY_SUMMARY),
        binding=", ".join(el.binding_constraints),
        rules=_table(rules, (*_ELIGIBILITY_RULE_COLUMNS, "reason")),
        further=_fields(el, ("aoi_area_ha", "rule_set", "patches", "notes")),
    )


@dataclass(frozen=True)
class EmissionsSection:
    figures: Pairs
    details: Pairs  # the factors, their sources, the breakdown by class, the notes


def _emissions(em: Emissions) -> EmissionsSection:
    data = msgspec.to_builtins(em)
    # the split the published document makes (results.document): figures, then what qualifies them
    figures = [
        k
        for k in em.__struct_fields__
        if k not in EMISSION_DETAIL_KEYS and not _annotation(k) and (data[k] is None or _is_number(data[k]))
    ]
    details = [k for k in em.__struct_fields__ if k not in figures]
    return EmissionsSection(_pairs(data, figures), _pairs(data, details))


_KPI_COLUMNS = ("indicator", "value", "unit", "definition", "source", "reason", "coverage_ratio")


def _kpis(results: Results) -> Value:
    rows = [{"indicator": name.replace("_", " "), **msgspec.to_builtins(kpi)} for name, kpi in results.kpis.items()]
    return _table(rows, _KPI_COLUMNS)


@dataclass(frozen=True)
class IndexView:
    title: str
    computed: bool
    score: Cell
    category: str
    confidence: str
    model: str
    drivers: Value | None
    components: Pairs | None


_DRIVER_COLUMNS = ("feature", "value", "contribution", "weight", "direction", "note")


def _index_view(name: str, index: IndexResult | None) -> IndexView:
    title = _INDEX_TITLES[name]
    if index is None:
        return IndexView(title, False, _not_computed(), "", "", "", None, None)
    # the largest contributions first, whatever their sign
    ranked = sorted(index.drivers, key=lambda d: -abs(d.contribution) if d.contribution is not None else 0.0)
    return IndexView(
        title,
        True,
        Cell(f"{index.score:.1f} / 100") if index.score is not None else _not_computed(),
        (index.category or "").replace("_", " "),
        f"{index.confidence:.2f}",
        f"{index.model.name} {index.model.version}",
        _table([msgspec.to_builtins(d) for d in ranked], _DRIVER_COLUMNS) if ranked else None,
        _pairs(index.components) if index.components else None,
    )


@dataclass(frozen=True)
class StatusRow:
    rule_id: str
    rule_name: str
    heuristic: bool  # a screening heuristic of this service, not a test a law states
    references: list[str]
    result: str  # triggered | not evaluable | passed
    css: str
    severity: str
    category: str
    message: str


@dataclass(frozen=True)
class HabitatsView:
    verdict: str
    css: str
    reason: str
    reference: str
    sites: Value | None  # None: not computed; NONE: no site in the zone of influence


@dataclass(frozen=True)
class AnnexView:
    head: str
    text: str
    evidence: Value | None


@dataclass(frozen=True)
class LegalSection:
    verdict: str
    css: str
    country: str
    reason: str
    summary: str
    packs: str
    habitats: HabitatsView
    annex_iii: list[AnnexView]
    statuses: list[StatusRow]
    notes: list[str]


_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
_STATUS_WORDS = {"triggered": ("triggered", "fail"), "not_evaluable": ("not evaluable", "neutral")}
_STATUS_ORDER = {"triggered": 0, "not_evaluable": 1, "passed": 2}


def _status_row(st: RuleStatus) -> StatusRow:
    word, css = _STATUS_WORDS.get(st.status, ("passed", "pass"))
    references = st.details.get("references") or []
    return StatusRow(
        rule_id=st.rule_id,
        rule_name=st.rule_name,
        heuristic=st.details.get("heuristic") is True,
        references=[references] if isinstance(references, str) else [str(r) for r in references],
        result=word,
        css=css,
        severity=st.severity,
        category=st.category,
        message=st.message,
    )


def _summary_text(summary: Summary) -> str:
    counts = f"{summary.passed} passed, {summary.triggered} triggered, {summary.not_evaluable} not evaluable"
    return f"{summary.total} rules checked: {counts}"


def _habitats(art63: HabitatsScreening) -> HabitatsView:
    css = {"not required": "pass", "appropriate assessment required": "fail"}.get(art63.verdict, "")
    sites = art63.natura2000_sites
    return HabitatsView(
        verdict=art63.verdict[:1].upper() + art63.verdict[1:],
        css=css,
        reason=art63.reason,
        reference=art63.reference,
        sites=None if sites is None else _value(sites),
    )


def _annex(finding: AnnexFinding) -> AnnexView:
    rows = [{"rule_id": e.rule_id, "severity": e.severity, "message": e.message} for e in finding.evidence]
    return AnnexView(f"{finding.criterion} {finding.section}".strip(), finding.text, _table(rows) if rows else None)


def _legal(legal: LegalResult) -> LegalSection:
    compliant = legal.overall_compliant
    ordered = sorted(
        legal.statuses, key=lambda st: (_STATUS_ORDER.get(st.status, 3), _SEVERITY_ORDER.get(st.severity, 5))
    )
    return LegalSection(
        verdict="Compliant"
        if compliant is True
        else "Not compliant"
        if compliant is False
        else "Compliance not determinable",
        css="pass" if compliant is True else "fail" if compliant is False else "",
        country=legal.country_code or "n/a",
        reason=legal.overall_reason,
        summary=_summary_text(legal.summary),
        packs=", ".join(legal.packs_applied),
        habitats=_habitats(legal.screening.habitats_directive_art6_3),
        annex_iii=[_annex(f) for f in legal.screening.eia_annex_iii],
        statuses=[_status_row(st) for st in ordered],
        notes=list(legal.notes),
    )


@dataclass(frozen=True)
class ProvenanceSection:
    warnings: Value | None
    datasets: Value | None
    step_durations: Value | None
    run_parameters: Value | None


def _provenance(results: Results, run: ReportRun) -> ProvenanceSection:
    shown = dict(run.params)
    if run.config:
        shown["config"] = run.config  # free-form client JSON: drawn as it is
    return ProvenanceSection(
        warnings=_value(results.warnings) if results.warnings else None,
        datasets=_value(results.datasets) if results.datasets else None,
        step_durations=_pairs(results.step_durations_s) if results.step_durations_s else None,
        run_parameters=_value(shown) if shown else None,
    )


@dataclass(frozen=True)
class ReportView:
    """Everything the page shows, in the order it shows it."""

    title: str
    subtitle: list[str]
    figures: list[Figure]
    aoi: AoiSection
    land_cover: LandCoverSection
    protected: ProtectedSection
    receptors: ReceptorsSection
    terrain: TerrainSection
    eligibility: EligibilitySection | None
    emissions: EmissionsSection
    kpis: Value
    indices: list[IndexView]
    legal: LegalSection | None
    provenance: ProvenanceSection


def report_view(
    results: Results,
    legal: LegalResult | None,
    run: ReportRun,
    *,
    aoi_geojson: Mapping[str, Any] | None = None,
    generated_at: datetime | None = None,
    site_map: str = "",
) -> ReportView:
    """The view model of the page (see `render_report`)."""
    params = results.parameters
    country = params.country or (legal.country_code if legal else None)  # the run's, as used
    when = generated_at or parse_utc(run.finished_at)
    subtitle = [
        text
        for text in (
            f"run {run.run_id}" if run.run_id else "",
            f"project {run.project_id}" if run.project_id else "",
            run.project_type or params.project_type,
            f"country {country}" if country else "",
            f"completed {when.isoformat(timespec='seconds')}" if when else "",
        )
        if text
    ]
    indices = _indices(results)
    return ReportView(
        title=f"Screening report {run.run_id}".strip(),
        subtitle=subtitle,
        figures=key_figures(results, legal, indices),
        # SVG this service drew itself (its text escaped where it was built): embedded as it is
        aoi=AoiSection(Markup(site_map or aoi_svg(aoi_geojson)), _fields(results.aoi)),
        land_cover=_land_cover(results.land_cover),
        protected=_protected(results.biodiversity),
        receptors=_receptors(results.receptor_distances),
        terrain=_terrain(results.terrain),
        eligibility=_eligibility(results.eligibility) if results.eligibility is not None else None,
        emissions=_emissions(results.emissions),
        kpis=_kpis(results),
        indices=[_index_view(name, index) for name, index in indices.items()],
        legal=_legal(legal) if legal is not None else None,
        provenance=_provenance(results, run),
    )


# --- the page ------------------------------------------------------------------------------------


def render_report(
    results: Results,
    legal: LegalResult | None,
    run: Mapping[str, Any],
    *,
    aoi_geojson: Mapping[str, Any] | None = None,
    generated_at: datetime | None = None,
    site_map: str = "",
) -> bytes:
    """The report as UTF-8 HTML bytes.

    `results` and `legal` are the run's typed results and legal verdict, `run` the run record (plain
    data, decoded here into `ReportRun`); `aoi_geojson` (optional) adds an outline of the AOI,
    `site_map` (optional, the inline SVG of `report_map.site_map_svg`) replaces that outline with the
    site map. `generated_at` is the time shown in the heading (default: the record's `finished_at`, when
    set); nothing else in the page depends on the clock, so the same inputs always give the same bytes.
    """
    view = report_view(
        results,
        legal,
        msgspec.convert(run, ReportRun),
        aoi_geojson=aoi_geojson,
        generated_at=generated_at,
        site_map=site_map,
    )
    return _template().render(view=view).encode("utf-8")


def warm_templates() -> None:
    """Compile the page and every template it imports or includes now, into `_template`'s environment.

    The forkserver calls this (`jobs/pipeline_preload.py`): compiling them costs ~0.25 s of CPU, which
    each run's child would otherwise pay again, since it renders once and exits."""
    env = _template().environment
    for name in env.list_templates(extensions=["j2", "css"]):
        env.get_template(name)


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
