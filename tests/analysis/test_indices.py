"""The four indices: bounds, monotonicity (property tests), confidence, categories, the weights file."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aethera.analysis import indices
from aethera.analysis.indices import IndexFeatures, IndexResult, compute_all
from aethera.errors import ConfigError

NOT_NUMERIC = ("project_type", "fallback_features", "missing_reasons", "not_found_within_km", "feature_coverage")
NUMERIC = [n for n in IndexFeatures.__struct_fields__ if n not in NOT_NUMERIC]

# Any value a feature could hold, including ones the pipeline should never produce (NaN, inf, negative).
any_number = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1.0, max_value=200.0),
)
any_count = st.one_of(st.none(), st.integers(min_value=0, max_value=10_000))


@st.composite
def features(
    draw: st.DrawFn, project_types: tuple[str | None, ...] = ("solar", "wind", None, "hydro")
) -> IndexFeatures:
    values: dict[str, object] = {}
    for name in NUMERIC:
        values[name] = draw(any_count if name == "natura2000_sites_in_buffer" else any_number)
    values["project_type"] = draw(st.sampled_from(project_types))
    values["fallback_features"] = tuple(draw(st.lists(st.sampled_from(NUMERIC), max_size=3, unique=True)))
    return IndexFeatures(**values)  # type: ignore[arg-type]


def _check_result(r: IndexResult) -> None:
    assert 0.0 <= r.confidence <= 1.0
    if r.score is None:
        assert r.category is None and r.confidence == 0.0
    else:
        assert 0.0 <= r.score <= 100.0 and not math.isnan(r.score)
        assert r.category in ("very_low", "low", "moderate", "high", "very_high")
    for value in r.components.values():
        assert value is None or 0.0 <= value <= 100.0


@settings(max_examples=300, deadline=None)
@given(features())
def test_every_score_is_within_0_100_for_any_input(f: IndexFeatures) -> None:
    result = compute_all(f)
    for r in (result.biodiversity_sensitivity, result.resm, result.ahsm, result.cim):
        _check_result(r)


def test_all_features_missing_gives_no_score_not_an_invented_one() -> None:
    result = compute_all(IndexFeatures(project_type="solar"))
    for r in (result.biodiversity_sensitivity, result.resm, result.ahsm, result.cim):
        assert r.score is None and r.category is None and r.confidence == 0.0
        assert all(d.contribution is None and d.note for d in r.drivers)


def _score(r: IndexResult) -> float:
    assert r.score is not None  # the varied feature itself is present, so a score exists
    return r.score


@settings(max_examples=300, deadline=None)
@given(features(), st.floats(0, 100), st.floats(0, 100))
def test_sensitivity_never_falls_when_protected_overlap_rises(f: IndexFeatures, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    s_lo = indices.biodiversity_sensitivity(msgspec.structs.replace(f, protected_overlap_pct=lo))
    s_hi = indices.biodiversity_sensitivity(msgspec.structs.replace(f, protected_overlap_pct=hi))
    assert _score(s_lo) <= _score(s_hi)


@settings(max_examples=300, deadline=None)
@given(features(project_types=("solar", "wind")), st.floats(0, 1e4), st.floats(0, 1e4))
def test_suitability_never_falls_when_distance_to_protected_rises(f: IndexFeatures, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    r_lo = indices.resm(msgspec.structs.replace(f, distance_to_protected_km=lo))
    r_hi = indices.resm(msgspec.structs.replace(f, distance_to_protected_km=hi))
    assert _score(r_lo) <= _score(r_hi)


@settings(max_examples=300, deadline=None)
@given(features(), st.floats(0, 1), st.floats(0, 1))
def test_hazard_never_falls_when_water_share_rises(f: IndexFeatures, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    h_lo = indices.ahsm(msgspec.structs.replace(f, water_ratio=lo))
    h_hi = indices.ahsm(msgspec.structs.replace(f, water_ratio=hi))
    assert _score(h_lo) <= _score(h_hi)
    assert (h_lo.components["flood"] or 0) <= (h_hi.components["flood"] or 0)


@settings(max_examples=200, deadline=None)
@given(features(project_types=("solar", "wind")), st.floats(0, 100), st.floats(0, 100))
def test_cumulative_impact_never_falls_when_protected_overlap_rises(f: IndexFeatures, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    c_lo = compute_all(msgspec.structs.replace(f, protected_overlap_pct=lo)).cim
    c_hi = compute_all(msgspec.structs.replace(f, protected_overlap_pct=hi)).cim
    assert _score(c_lo) <= _score(c_hi)


SEARCH_LIMIT_KM = 100.0  # receptors.SEARCH_RADII_KM[-1]; a test below checks they agree
# A distance to the nearest protected area as a run can report it: found at some distance within the
# search limit, or "none within the limit" (None with the limit as a lower bound).
protected_distance = st.one_of(st.floats(0, SEARCH_LIMIT_KM), st.just("none"))


def _with_distance(f: IndexFeatures, d: float | str) -> IndexFeatures:
    if d == "none":
        return msgspec.structs.replace(
            f, distance_to_protected_km=None, not_found_within_km={"distance_to_protected_km": SEARCH_LIMIT_KM}
        )
    return msgspec.structs.replace(f, distance_to_protected_km=d, not_found_within_km={})


def _farther(a: float | str, b: float | str) -> tuple[float | str, float | str]:
    """(nearer, farther): "none within the limit" is farther than any found distance."""
    key = lambda d: math.inf if d == "none" else d  # noqa: E731
    return (a, b) if key(a) <= key(b) else (b, a)


@settings(max_examples=400, deadline=None)
@given(features(project_types=("solar", "wind")), protected_distance, protected_distance)
def test_farther_from_protected_areas_never_lowers_suitability_search_limit_included(
    f: IndexFeatures, a: float | str, b: float | str
) -> None:
    near, far = _farther(a, b)
    assert _score(indices.resm(_with_distance(f, near))) <= _score(indices.resm(_with_distance(f, far)))


@settings(max_examples=400, deadline=None)
@given(features(project_types=("solar", "wind")), protected_distance, protected_distance)
def test_farther_from_protected_areas_never_raises_sensitivity_or_impact_search_limit_included(
    f: IndexFeatures, a: float | str, b: float | str
) -> None:
    near, far = _farther(a, b)
    s_near, s_far = compute_all(_with_distance(f, near)), compute_all(_with_distance(f, far))
    assert _score(s_far.biodiversity_sensitivity) <= _score(s_near.biodiversity_sensitivity)
    assert _score(s_far.cim) <= _score(s_near.cim)


def test_nothing_within_the_search_limit_scores_as_the_limit_not_as_missing() -> None:
    # The audit's case: a complete site, protected area at 60 km against none within 100 km.
    at_60 = indices.resm(_complete(distance_to_protected_km=60.0))
    none = indices.resm(
        _complete(distance_to_protected_km=None, not_found_within_km={"distance_to_protected_km": SEARCH_LIMIT_KM})
    )
    assert none.score == at_60.score  # both beyond the ramp's end: equally free of conflicts
    assert none.confidence == at_60.confidence == 1.0
    d = next(d for d in none.drivers if d.feature == "distance_to_protected_km")
    assert d.value == SEARCH_LIMIT_KM and "none found within 100 km" in (d.note or "")
    # without the bound the feature is left out and the score falls: what the fix prevents
    dropped = indices.resm(_complete(distance_to_protected_km=None))
    assert dropped.score < at_60.score


def test_search_limit_agrees_with_the_receptor_search() -> None:
    from aethera.analysis.receptors import SEARCH_RADII_KM

    assert SEARCH_RADII_KM[-1] == SEARCH_LIMIT_KM


def _complete(**changes: object) -> IndexFeatures:
    base = IndexFeatures(
        project_type="solar",
        protected_overlap_pct=0.0,
        distance_to_protected_km=8.0,
        natura2000_sites_in_buffer=0,
        distance_to_settlement_km=1.5,
        distance_to_water_km=1.0,
        water_ratio=0.0,
        wetland_ratio=0.0,
        forest_ratio=0.1,
        shrub_ratio=0.05,
        agricultural_ratio=0.7,
        artificial_ratio=0.15,
        natural_habitat_ratio=0.15,
        mean_slope_deg=3.0,
        land_use_change_tco2e_per_ha=5.0,
    )
    return msgspec.structs.replace(base, **changes)


def test_confidence_is_one_with_every_input_and_drops_without_elevation() -> None:
    full = compute_all(_complete())
    assert full.ahsm.confidence == 1.0 and full.biodiversity_sensitivity.confidence == 1.0
    no_dem = compute_all(_complete(mean_slope_deg=None))
    # slope carries 0.25 of AHSM's weight in the data file
    assert no_dem.ahsm.confidence == pytest.approx(0.75)
    assert no_dem.ahsm.components["landslide"] is None
    slope = next(d for d in no_dem.ahsm.drivers if d.feature == "mean_slope_deg")
    assert slope.value is None and slope.contribution is None and "elevation" in (slope.note or "")
    # sensitivity does not use slope: its confidence must not move
    assert no_dem.biodiversity_sensitivity.confidence == 1.0
    # RESM uses slope, so it drops too, and CIM inherits the lower confidence of its sub-indices
    assert no_dem.resm.confidence < 1.0
    assert no_dem.cim.confidence < full.cim.confidence


def test_missing_reason_from_the_run_is_shown() -> None:
    f = _complete(
        distance_to_water_km=None,
        missing_reasons={"distance_to_water_km": "no water layer and no CORINE water in reach"},
    )
    d = next(d for d in indices.ahsm(f).drivers if d.feature == "distance_to_water_km")
    assert d.note is not None and d.note.startswith("no water layer and no CORINE water in reach")


def test_fallback_source_lowers_confidence_but_not_score() -> None:
    direct = indices.ahsm(_complete())
    fallback = indices.ahsm(_complete(fallback_features=("distance_to_water_km",)))
    assert fallback.score == direct.score
    # distance to water has weight 0.15 of 1.0 and counts half
    assert fallback.confidence == pytest.approx(1.0 - 0.15 * 0.5)


def test_confidence_varies_with_inputs() -> None:
    seen = set()
    for missing in (
        [],
        ["mean_slope_deg"],
        ["mean_slope_deg", "distance_to_water_km"],
        ["forest_ratio", "shrub_ratio"],
    ):
        seen.add(indices.ahsm(_complete(**{m: None for m in missing})).confidence)
    assert len(seen) == 4


def test_contributions_add_up_to_the_score() -> None:
    for r in msgspec.structs.astuple(compute_all(_complete(protected_overlap_pct=30.0, mean_slope_deg=None))):
        total = sum(d.contribution for d in r.drivers if d.contribution is not None)
        assert total == pytest.approx(r.score, abs=0.1)
        assert r.drivers[0].contribution == max(d.contribution or 0 for d in r.drivers)


def test_categories_follow_the_cut_points() -> None:
    cases = {
        0.0: "very_low",
        19.99: "very_low",
        20.0: "low",
        39.9: "low",
        40.0: "moderate",
        59.9: "moderate",
        60.0: "high",
        79.9: "high",
        80.0: "very_high",
        100.0: "very_high",
    }
    for score, label in cases.items():
        assert indices.categorize(score) == label


def test_expected_orderings_on_plain_sites() -> None:
    inside = _complete(
        protected_overlap_pct=100.0,
        distance_to_protected_km=0.0,
        natura2000_sites_in_buffer=2,
        natural_habitat_ratio=0.9,
        forest_ratio=0.7,
        agricultural_ratio=0.1,
        artificial_ratio=0.0,
        wetland_ratio=0.1,
        land_use_change_tco2e_per_ha=150.0,
    )
    brownfield = _complete(
        distance_to_protected_km=20.0, artificial_ratio=0.6, agricultural_ratio=0.3, natural_habitat_ratio=0.1
    )
    a, b = compute_all(inside), compute_all(brownfield)
    assert a.biodiversity_sensitivity.category in ("high", "very_high") and a.biodiversity_sensitivity.score >= 70
    assert b.biodiversity_sensitivity.category == "very_low"
    assert a.resm.score < b.resm.score and b.resm.category in ("high", "very_high")
    assert a.cim.score > b.cim.score
    assert a.ahsm.components["wildfire"] > b.ahsm.components["wildfire"]


def test_resm_for_unknown_technology_is_null_with_reason() -> None:
    r = indices.resm(_complete(project_type="hydro"))
    assert r.score is None and r.confidence == 0.0 and "hydro" in (r.drivers[0].note or "")
    # and wind uses its own model
    assert indices.resm(_complete(project_type="wind")).model.name == "resm_wind_wlc"


def test_shipped_weights_file_is_valid() -> None:
    w = indices.load_weights()
    assert set(indices.REQUIRED_MODELS) <= set(w.models)


def _weights_text(old: str, new: str) -> str:
    from importlib import resources

    text = resources.files("aethera.analysis").joinpath(indices.WEIGHTS_FILE).read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('feature = "protected_overlap_pct"', 'feature = "protected_overlap_pcnt"', "unknown feature"),
        ("weight = 0.30", "weight = -0.30", "positive"),
        ("high = 50.0  #", "high = -1.0  #", "low must be below high"),
        ("cut_points = [20.0, 40.0, 60.0, 80.0]", "cut_points = [20.0, 60.0, 40.0, 80.0]", "ascending"),
        ('direction = "increasing"', 'direction = "upwards"', "invalid"),
    ],
)
def test_broken_weights_file_is_refused(old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        indices.parse_weights(_weights_text(old, new))


def test_confidence_scales_with_the_land_cover_coverage() -> None:
    # The same ratios measured on a quarter of the AOI weigh a quarter as much in the confidence: the
    # score is the best estimate there is, the confidence says how little land it rests on.
    ratios = dict(
        water_ratio=0.0,
        wetland_ratio=0.0,
        forest_ratio=0.2,
        shrub_ratio=0.5,
        agricultural_ratio=0.1,
        artificial_ratio=0.0,
        natural_habitat_ratio=0.9,
    )
    base = dict(
        project_type="solar",
        protected_overlap_pct=100.0,
        distance_to_protected_km=0.0,
        natura2000_sites_in_buffer=1,
        distance_to_settlement_km=3.0,
        distance_to_water_km=2.0,
        mean_slope_deg=10.0,
        land_use_change_tco2e_per_ha=50.0,
        **ratios,
    )
    full = compute_all(IndexFeatures(**base))  # type: ignore[arg-type]
    quarter = compute_all(IndexFeatures(**base, feature_coverage={k: 0.25 for k in ratios}))  # type: ignore[arg-type]
    for a, b in ((full.biodiversity_sensitivity, quarter.biodiversity_sensitivity), (full.ahsm, quarter.ahsm)):
        assert a.score == b.score and a.confidence == 1.0
        land_weight = sum(d.weight for d in a.drivers if d.feature in ratios)
        total = sum(d.weight for d in a.drivers)
        assert b.confidence == pytest.approx((total - 0.75 * land_weight) / total, abs=1e-3)
    assert quarter.cim.confidence < full.cim.confidence


# --- CIM: stated weights are the effective ones ----------------------------------------------------


def _ramps(feature: str, project_type: str) -> list[tuple[float, float]]:
    """(low, high) of `feature` in every model CIM rests on (read from the weights file)."""
    w = indices.load_weights()
    keys = ("cim", "biodiversity_sensitivity", f"resm_{project_type}", "ahsm")
    return [(f.low, f.high) for k in keys for f in w.models[k].features if f.feature == feature]


def _measured_weight(feature: str, project_type: str) -> float:
    """CIM's change (as a share of 100) when `feature` alone runs over its whole ramp(s), every other
    input present and fixed: the effective weight, measured on the scores rather than read off the model."""
    ramps = _ramps(feature, project_type)
    lo, hi = min(r[0] for r in ramps), max(r[1] for r in ramps)
    a = compute_all(_complete(project_type=project_type, **{feature: lo})).cim
    b = compute_all(_complete(project_type=project_type, **{feature: hi})).cim
    return (_score(b) - _score(a)) / 100.0


@pytest.mark.parametrize("project_type", ["solar", "wind"])
def test_cim_stated_weights_are_the_effective_weights(project_type: str) -> None:
    model = indices.load_weights().models["cim"]
    total = sum(f.weight for f in model.features)
    direct = [f for f in model.features if f.feature not in indices.SCORE_FEATURES]
    assert {f.feature for f in direct} == {
        "protected_overlap_pct",
        "natural_habitat_ratio",
        "land_use_change_tco2e_per_ha",
    }
    for f in direct:
        stated = f.weight / total * (1 if f.direction == "increasing" else -1)
        # scores are rounded to 0.1 point (sub-indices and CIM): 0.002 of tolerance on a 0.15 weight
        assert _measured_weight(f.feature, project_type) == pytest.approx(stated, abs=0.002), f.feature


@pytest.mark.parametrize("project_type", ["solar", "wind"])
def test_cim_reports_every_raw_features_effective_weight(project_type: str) -> None:
    reported = compute_all(_complete(project_type=project_type)).cim.effective_weights
    assert reported == indices.effective_weights(project_type)
    for feature, weight in reported.items():
        assert _measured_weight(feature, project_type) == pytest.approx(weight, abs=0.002), feature
    # every share of the score is accounted for: the absolute effective weights sum to 1
    assert sum(abs(v) for v in reported.values()) == pytest.approx(1.0, abs=1e-5)


def test_cim_driver_says_the_sub_index_was_re_scored() -> None:
    r = compute_all(_complete(protected_overlap_pct=20.0)).cim
    d = next(d for d in r.drivers if d.feature == "biodiversity_sensitivity_score")
    assert "re-scored without" in (d.note or "") and "published score" in (d.note or "")
