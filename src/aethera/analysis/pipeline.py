"""The screening pipeline: the analysis steps chained, with progress, cancellation and step timings.

`run(aoi, params, catalog, progress, is_cancelled, on_output=None) -> PipelineOutput` is synchronous
(the worker calls it in a thread). Steps are a list (`STEPS`); each reads and fills a `RunContext`.
Between steps the pipeline reports progress and checks for cancellation (`RunCancelled`). Each step's
duration lands in `results.step_durations_s`.

Adding a step (the indices, the legal check) is one entry in `STEPS`: a function taking the context,
placed where its inputs exist (indices after "kpis", legal after the indices; both before "layers",
which writes the sensitivity layer from `ctx.biodiversity.sensitivity`).

Failures: a bad AOI is `InvalidAOI` (from `load_aoi`, before a run); a missing or unreadable
land-cover layer is `DatasetError` naming it; a missing optional layer is not a failure: it is named in
`results.datasets` and `results.warnings`, and what depends on it is null with a reason or falls back.
An unexpected error inside a step becomes `AnalysisError` naming the step (the original is chained for
the logs; its text never reaches the user); a read of a layer that failed for a transient reason
(`gdal_io.transient_reason`) becomes `DatasetUnavailable`, and the worker tries the run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from aethera.analysis import eligibility as eligibility_step
from aethera.analysis import emissions as emissions_step
from aethera.analysis import indices as indices_step
from aethera.analysis import kpis as kpis_step
from aethera.analysis import land_cover as land_cover_step
from aethera.analysis import landscape as landscape_step
from aethera.analysis import national_area as national_area_step
from aethera.analysis import protected_areas as protected_step
from aethera.analysis import receptors as receptors_step
from aethera.analysis import terrain as terrain_step
from aethera.analysis.aoi import AOI
from aethera.analysis.geojson import MEDIA_TYPE
from aethera.analysis.metrics import (
    index_features,
    metric_provenance,
    metric_reasons,
    natura_sites,
    screening_metrics,
)
from aethera.analysis.params import RunParams
from aethera.analysis.projection import ETRS89_LAEA
from aethera.analysis.results import (
    KPI,
    Biodiversity,
    DatasetStatus,
    Eligibility,
    Emissions,
    LandCover,
    Parameters,
    ReceptorDistances,
    Results,
    Terrain,
)
from aethera.data.catalog import LAYER_NAMES, REQUIRED_LAYERS, Catalog, inspect_source
from aethera.data.gdal_io import transient_reason
from aethera.errors import AetheraError, AnalysisError, DatasetError, DatasetUnavailable, RunCancelled
from aethera.legal import engine as legal_engine

ProgressFn = Callable[[str, float, str], None]
CancelFn = Callable[[], bool]
OutputFn = Callable[[str, bytes, str], None]

LAYER_NAMES_OUT: tuple[str, ...] = ("natura", "overlap", "sensitivity", "eligible")

# What each optional layer feeds, for the message when it is missing.
_DEPENDS = {
    "protected_areas": "protected-area overlap, nearest protected area and biodiversity figures are null",
    "settlements": "nearest settlement falls back to CORINE urban fabric; population unknown",
    "water": "nearest water body falls back to CORINE water and wetland classes",
    "elevation": "slope, elevation and the slope-based hazard are null (lower confidence)",
}


@dataclass
class PipelineOutput:
    results: Results
    legal: Any  # the legal object (filled by the legal step; None until it exists)
    layers: dict[str, bytes]  # natura, overlap, sensitivity, eligible: GeoJSON FeatureCollections in EPSG:4326


@dataclass
class RunContext:
    """Everything a run has so far; each step reads what it needs and sets its own fields."""

    aoi: AOI
    params: RunParams
    catalog: Catalog  # the catalog as configured
    on_output: OutputFn | None = None
    usable: Catalog | None = None  # the catalog without the optional layers that could not be opened
    capacity_mw: float = 0.0
    capacity_source: str = ""
    national_area: national_area_step.NationalArea | None = None
    land_cover: LandCover | None = None
    biodiversity: Biodiversity | None = None
    receptor_distances: ReceptorDistances | None = None
    terrain: Terrain | None = None
    eligibility: Eligibility | None = None
    emissions: Emissions | None = None
    kpis: dict[str, KPI] | None = None
    landscape: landscape_step.LandscapeMetrics | None = None
    resm: Any = None
    ahsm: Any = None
    cim: Any = None
    legal: Any = None
    layers: dict[str, bytes] = field(default_factory=dict)
    datasets: list[DatasetStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    step_durations_s: dict[str, float] = field(default_factory=dict)

    @property
    def data(self) -> Catalog:
        return self.usable or self.catalog

    def emit_layer(self, name: str, data: bytes) -> None:
        self.layers[name] = data
        if self.on_output is not None:
            self.on_output(f"layers/{name}.geojson", data, MEDIA_TYPE)


@dataclass(frozen=True)
class Step:
    name: str
    weight: float  # share of the progress bar
    message: str
    fn: Callable[[RunContext], None]


# --- steps ---------------------------------------------------------------------------------------


def _step_datasets(ctx: RunContext) -> None:
    usable: dict[str, tuple[Any, ...]] = {}
    for name in LAYER_NAMES:
        sources = ctx.catalog.sources(name)
        required = name in REQUIRED_LAYERS
        if not sources:
            missing = "not configured in the dataset catalog"
            if name in _DEPENDS:
                missing += f": {_DEPENDS[name]}"
                ctx.warnings.append(f"no {name} layer: {_DEPENDS[name]}")
            ctx.datasets.append(
                DatasetStatus(layer=name, required=required, configured=False, available=False, reason=missing)
            )
            continue
        reports = [inspect_source(s, bounds=False) for s in sources]
        bad = [r for r in reports if not r.ok]
        if bad and required:
            raise DatasetError(f"layer {name!r} ({bad[0].display}): {'; '.join(bad[0].problems)}", layer=name)
        good = [s for s, r in zip(sources, reports) if r.ok]
        reason: str | None = None
        if bad:
            problems = "; ".join(f"{r.display}: {', '.join(r.problems)}" for r in bad)
            reason = problems + (f" ({_DEPENDS[name]})" if not good and name in _DEPENDS else "")
            ctx.warnings.append(f"layer {name} unusable in part or whole: {reason}")
        if good:
            usable[name] = tuple(good)
        first = sources[0]
        ctx.datasets.append(
            DatasetStatus(
                layer=name,
                required=required,
                configured=True,
                available=bool(good),
                title=first.title,
                files=sorted({s.display for s in sources}),
                format=first.format,
                crs=next((r.crs for r in reports if r.crs), None),
                synthetic=any(s.synthetic for s in sources),
                attribution=first.attribution or ctx.catalog.attribution,
                reason=reason,
            )
        )
    ctx.usable = replace(ctx.catalog, layers=usable)


def _step_aoi(ctx: RunContext) -> None:
    from aethera.analysis.aoi import check_within_catalog

    check_within_catalog(ctx.aoi, ctx.data)
    ctx.capacity_mw, ctx.capacity_source = ctx.params.resolved_capacity(ctx.aoi.area_ha)
    ctx.national_area = national_area_step.measure(ctx.aoi, ctx.params.country)
    for repair in ctx.aoi.repairs:
        ctx.warnings.append(f"AOI repaired: {repair}")


def _step_land_cover(ctx: RunContext) -> None:
    lc = land_cover_step.summarize(ctx.aoi, ctx.data, ctx.params.buffer_km)
    ctx.land_cover = lc
    if lc.coverage_ratio < 1.0:
        gaps = []
        if lc.aoi.outside_layer_ha > 0:
            gaps.append(f"{lc.aoi.outside_layer_ha:.2f} ha outside the layer")
        if lc.aoi.nodata_ha > 0:
            gaps.append(f"{lc.aoi.nodata_ha:.2f} ha on no-data cells")
        unclassified = lc.aoi.classified_ha - (lc.aoi.covered_ha or 0.0)
        if unclassified > 0.0001:
            gaps.append(f"{unclassified:.2f} ha on unclassified codes")
        ctx.warnings.append(
            f"land-cover data cover {lc.coverage_ratio:.2%} of the AOI ({', '.join(gaps) or 'gaps'} not covered): "
            "land-cover ratios are shares of the covered part only, land-use-change emissions are extrapolated "
            "from it, and below a rule pack's coverage threshold a rule resting on land cover gets a verdict only "
            "when no land cover of the uncovered part could change it (else it is not evaluable)"
        )


def _step_protected_areas(ctx: RunContext) -> None:
    bio, layers = protected_step.analyse(ctx.aoi, ctx.data, ctx.params.buffer_km)
    ctx.biodiversity = bio
    for name in ("natura", "overlap"):
        ctx.emit_layer(name, layers[name])


def _step_receptors(ctx: RunContext) -> None:
    ctx.receptor_distances = receptors_step.analyse(ctx.aoi, ctx.data)


def _step_terrain(ctx: RunContext) -> None:
    ctx.terrain = terrain_step.analyse(ctx.aoi, ctx.data)


def _step_eligibility(ctx: RunContext) -> None:
    result, layer = eligibility_step.analyse(ctx.aoi, ctx.data, ctx.params)
    ctx.eligibility = result
    ctx.emit_layer("eligible", layer)
    ctx.warnings.extend(f"land eligibility: {note}" for note in result.notes)
    if ctx.params.capacity_mw is None:
        # The capacity choice: without a requested capacity, the project is what the eligible land holds
        # (emissions, KPIs and the legal capacity metric all read ctx.capacity_mw from here on).
        ctx.capacity_mw = result.capacity_mw
        bound = ", an upper bound" if result.upper_bound else ""
        ctx.capacity_source = (
            f"eligible land: density {result.mw_per_ha:g} MW/ha x eligible area {result.eligible_ha:.2f} ha of the "
            f"AOI's {result.aoi_area_ha:.2f} ha (results.eligibility{bound})"
        )
        if result.capacity_mw <= 0:
            ctx.warnings.append(
                "no land of the AOI is eligible under the rule set, so the emission balance is of a 0 MW project; "
                "set config.capacity_mw (or relax config.eligibility) to screen a project of a given size"
            )


def _step_emissions(ctx: RunContext) -> None:
    assert ctx.land_cover is not None and ctx.terrain is not None
    lon, lat = ctx.aoi.centroid_lonlat
    ctx.emissions = emissions_step.compute(
        ctx.land_cover,
        ctx.params,
        capacity_mw=ctx.capacity_mw,
        aoi_area_ha=ctx.aoi.area_ha,
        in_europe=ctx.aoi.area_crs == ETRS89_LAEA,
        site=emissions_step.Site(
            lon=lon, lat=lat, country=ctx.params.country, mean_elevation_m=ctx.terrain.mean_elevation_m
        ),
    )


def _step_kpis(ctx: RunContext) -> None:
    assert ctx.land_cover and ctx.emissions and ctx.receptor_distances and ctx.terrain
    grid = landscape_step.class_grid(ctx.aoi, ctx.data)
    ctx.landscape = landscape_step.metrics(grid, ctx.aoi.area_m2) if grid is not None else None
    months = float(emissions_step.load_factors()["technology"][ctx.params.project_type]["construction_months"])
    ctx.kpis = kpis_step.compute(
        land_cover=ctx.land_cover,
        emissions=ctx.emissions,
        receptors=ctx.receptor_distances,
        terrain=ctx.terrain,
        landscape=ctx.landscape,
        aoi_area_ha=ctx.aoi.area_ha,
        construction_months=months,
    )


def _step_indices(ctx: RunContext) -> None:
    assert ctx.biodiversity is not None
    computed = indices_step.compute_all(index_features(build_results(ctx)))
    ctx.biodiversity.sensitivity = computed.biodiversity_sensitivity
    ctx.biodiversity.sensitivity_reason = (
        None
        if computed.biodiversity_sensitivity.score is not None
        else "no input of the biodiversity sensitivity model could be computed"
    )
    ctx.resm, ctx.ahsm, ctx.cim = computed.resm, computed.ahsm, computed.cim


def _step_legal(ctx: RunContext) -> None:
    results = build_results(ctx)  # with the index scores, which some rules read
    ctx.legal = legal_engine.evaluate(
        screening_metrics(results, ctx.params),
        ctx.params.country,
        natura_sites(results),
        metric_reasons=metric_reasons(results),
        provenance=metric_provenance(results),
    )


def _step_layers(ctx: RunContext) -> None:
    assert ctx.biodiversity is not None
    ctx.emit_layer("sensitivity", protected_step.sensitivity_layer(ctx.aoi, ctx.biodiversity))


STEPS: list[Step] = [
    Step("datasets", 2, "checking the dataset layers", _step_datasets),
    Step("aoi", 3, "measuring the area of interest", _step_aoi),
    Step("land_cover", 25, "summarising land cover in the AOI and its buffer", _step_land_cover),
    Step("protected_areas", 15, "intersecting protected areas", _step_protected_areas),
    Step("receptors", 15, "measuring distances to receptors", _step_receptors),
    Step("terrain", 8, "reading elevation and slope", _step_terrain),
    Step("eligibility", 6, "finding the land the project could be built on", _step_eligibility),
    Step("emissions", 4, "computing the emission balance", _step_emissions),
    Step("kpis", 20, "computing indicators", _step_kpis),
    Step("indices", 2, "scoring sensitivity, suitability, hazard and cumulative impact", _step_indices),
    Step("legal", 2, "checking the EU and national rule packs", _step_legal),
    Step("layers", 3, "writing map layers", _step_layers),
]


def run(
    aoi: AOI,
    params: RunParams,
    catalog: Catalog,
    progress: ProgressFn,
    is_cancelled: CancelFn,
    on_output: OutputFn | None = None,
    *,
    steps: list[Step] | None = None,
) -> PipelineOutput:
    """Run every step on `aoi`; see the module docstring for the contract."""
    steps = STEPS if steps is None else steps
    ctx = RunContext(aoi=aoi, params=params, catalog=catalog, on_output=on_output)
    total = sum(s.weight for s in steps) or 1.0
    done = 0.0
    for step in steps:
        if is_cancelled():
            raise RunCancelled(f"the run was cancelled before the {step.name} step")
        progress(step.name, round(100.0 * done / total, 1), step.message)
        started = time.perf_counter()
        try:
            step.fn(ctx)
        except AetheraError:
            raise
        except Exception as exc:  # a bug or a library failure: name the step, keep details for the logs
            reason = transient_reason(exc)
            if reason is not None:  # a layer's server failed mid-read (after GDAL's retries): try again
                raise DatasetUnavailable(
                    f"the {step.name} step could not read a dataset layer for now ({reason})", step=step.name
                ) from exc
            raise AnalysisError(f"the {step.name} step failed unexpectedly") from exc
        ctx.step_durations_s[step.name] = round(time.perf_counter() - started, 4)
        done += step.weight
    if is_cancelled():
        raise RunCancelled("the run was cancelled")
    progress("done", 100.0, "screening complete")
    return PipelineOutput(results=build_results(ctx), legal=ctx.legal, layers=dict(ctx.layers))


def build_results(ctx: RunContext) -> Results:
    """The results Struct from a context whose analysis steps have all run."""
    assert ctx.land_cover and ctx.biodiversity and ctx.receptor_distances and ctx.terrain and ctx.emissions
    assert ctx.kpis is not None
    summary = ctx.aoi.summary()
    if ctx.national_area is not None:
        n = ctx.national_area
        summary = msgspec.structs.replace(
            summary,
            aoi_area_national_ha=n.area_ha,
            national_area_crs=n.crs,
            national_area_basis=n.basis,
            national_area_reason=n.reason,
        )
    return Results(
        aoi=summary,
        parameters=Parameters(
            project_type=ctx.params.project_type,
            country=ctx.params.country,
            capacity_mw=ctx.capacity_mw,
            capacity_source=ctx.capacity_source,
            buffer_km=ctx.params.buffer_km,
            lifetime_years=ctx.emissions.lifetime_years,
        ),
        land_cover=ctx.land_cover,
        biodiversity=ctx.biodiversity,
        receptor_distances=ctx.receptor_distances,
        terrain=ctx.terrain,
        emissions=ctx.emissions,
        kpis=ctx.kpis,
        resm=ctx.resm,
        ahsm=ctx.ahsm,
        cim=ctx.cim,
        eligibility=ctx.eligibility,
        datasets=ctx.datasets,
        warnings=ctx.warnings,
        step_durations_s=ctx.step_durations_s,
    )
