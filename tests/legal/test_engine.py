"""The engine's output: statuses, not_evaluable, templates, summary, compliance, screening, countries."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aethera.errors import UnknownCountry
from aethera.legal import packs
from aethera.legal.engine import evaluate, to_builtins
from aethera.legal.metrics import METRICS

MetricsFactory = Callable[..., dict[str, Any]]


def status(result: Any, rule_id: str) -> Any:
    return next(s for s in result.statuses if s.rule_id == rule_id)


def test_fine_project_passes_and_every_status_is_well_formed(metrics: MetricsFactory) -> None:
    r = evaluate(metrics(), "DEU", [])
    assert r.country_code == "DEU" and r.packs_applied == ["EU", "DEU"]
    assert r.overall_compliant is True and r.critical_violations == []
    for s in r.statuses:
        assert s.status in ("passed", "triggered")
        assert s.passed is (s.status == "passed")
        assert s.details["references"] and isinstance(s.details["heuristic"], bool)
    # the API's legal object keeps its required keys
    obj = to_builtins(r)
    for key in (
        "country_code",
        "overall_compliant",
        "summary",
        "statuses",
        "critical_violations",
        "warnings",
        "informational",
        "packs_applied",
        "screening",
    ):
        assert key in obj
    for s in obj["statuses"]:
        assert {"rule_id", "rule_name", "passed", "message", "severity", "category", "details"} <= set(s)
    json.dumps(obj)


def test_missing_metric_makes_its_rules_not_evaluable(metrics: MetricsFactory) -> None:
    r = evaluate(
        metrics(mean_slope_deg=None),
        "DEU",
        [],
        metric_reasons={"mean_slope_deg": "no elevation layer in the dataset catalog"},
    )
    s = status(r, "EU-STEEP-TERRAIN")
    assert s.status == "not_evaluable" and s.passed is None
    assert "mean_slope_deg" in s.message and "no elevation layer" in s.message
    assert s.details["missing_metrics"] == ["mean_slope_deg"]
    assert s in r.not_evaluable and s not in r.warnings
    assert r.summary.not_evaluable == 1 and r.summary.by_severity["low"].not_evaluable == 1
    # a low-severity rule that cannot be evaluated does not put compliance in doubt
    assert r.overall_compliant is True


def test_critical_rule_not_evaluable_leaves_compliance_undetermined(metrics: MetricsFactory) -> None:
    r = evaluate(metrics(natura2000_overlap_ha=None), "ITA", None)
    assert status(r, "EU-HD-6.3-OVERLAP").status == "not_evaluable"
    assert status(r, "ITA-DPR357-5").status == "not_evaluable"
    assert r.overall_compliant is None and "EU-HD-6.3-OVERLAP" in r.overall_reason
    assert r.screening.habitats_directive_art6_3.verdict == "cannot be excluded"


def test_outcome_certain_despite_a_missing_metric_is_reported(metrics: MetricsFactory) -> None:
    # a solar park: the wind setback rule is certainly not triggered, whatever the settlement distance
    r = evaluate(metrics(distance_to_settlement_km=None), "FRA", [])
    s = status(r, "FRA-L515-44")
    assert s.status == "passed" and s.details["missing_metrics"] == ["distance_to_settlement_km"]
    assert "n/a" in s.message
    # for a wind farm the same gap makes it not evaluable
    r = evaluate(metrics(project_type="wind", distance_to_settlement_km=None), "FRA", [])
    assert status(r, "FRA-L515-44").status == "not_evaluable" and r.overall_compliant is None


def test_summary_counts_add_up(metrics: MetricsFactory, site: Any) -> None:
    r = evaluate(
        metrics(
            natura2000_overlap_ha=2.0,
            natura2000_sites_in_buffer=1,
            mean_slope_deg=None,
            project_type="wind",
            capacity_mw=40.0,
        ),
        "ESP",
        [site("ES6140004", 0.0, 2.0)],
    )
    s = r.summary
    assert s.total == len(r.statuses) == s.passed + s.triggered + s.not_evaluable
    assert s.total == sum(len(p.rules) for p in packs.packs_for("ESP"))
    assert sum(c.total for c in s.by_severity.values()) == s.total
    for sev, c in s.by_severity.items():
        assert c.total == c.passed + c.triggered + c.not_evaluable
        assert c.total == sum(x.severity == sev for x in r.statuses)
    assert len(r.critical_violations) == s.by_severity["critical"].triggered
    assert len(r.warnings) == sum(s.by_severity[x].triggered for x in ("high", "medium", "low"))
    assert len(r.informational) == s.by_severity["info"].triggered


any_value = {
    float: st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    int: st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
    str: st.one_of(st.none(), st.sampled_from(["solar", "wind", "hydro"])),
}


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries({name: any_value[spec.type] for name, spec in METRICS.items()}),
    st.sampled_from(["DEU", "FRA", "ITA", "GRC", "ESP", "AUT", "USA"]),
)
def test_templates_are_always_filled_and_verdicts_consistent(m: dict[str, Any], country: str) -> None:
    r = evaluate(m, country, None)
    for s in r.statuses:
        assert s.message and not re.search(r"\{[a-z0-9_]+(:[^}]*)?\}", s.message), s.message
        assert (s.passed is None) == (s.status == "not_evaluable")
    assert (r.overall_compliant is False) == bool(r.critical_violations)


def test_country_codes_are_validated_before_any_pack_is_touched(
    metrics: MetricsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pack(*_: Any) -> None:
        raise AssertionError("a pack was looked up for an invalid country")

    monkeypatch.setattr("aethera.legal.engine.packs_for", no_pack)
    for bad in ("deu", "DE", "DEUT", "../DEU", "DEU/../../etc", "", "D3U", "XYZ", "EU", 276):
        with pytest.raises(UnknownCountry) as info:
            evaluate(metrics(), bad, [])  # type: ignore[arg-type]
        assert "/" not in info.value.detail and ".." not in info.value.detail
    assert "XYZ is not an ISO 3166-1 alpha-3" in _detail(metrics(), "XYZ")


def _detail(m: dict[str, Any], country: str) -> str:
    try:
        evaluate(m, country, [])
    except UnknownCountry as exc:
        return exc.detail
    raise AssertionError("no error")


def test_country_without_pack_gets_the_eu_pack(metrics: MetricsFactory) -> None:
    r = evaluate(metrics(), "AUT", [])
    assert r.packs_applied == ["EU"] and r.country_code == "AUT"
    assert any("No national rule pack for AUT" in n for n in r.notes)
    assert all(s.rule_id.startswith("EU-") for s in r.statuses)
    r = evaluate(metrics(), "USA", [])
    assert r.packs_applied == ["EU"] and any("not an EU member" in n for n in r.notes)
    r = evaluate(metrics(), None, [])
    assert r.packs_applied == ["EU"] and r.country_code is None


def test_art_6_3_verdicts(metrics: MetricsFactory, site: Any) -> None:
    inside = evaluate(
        metrics(natura2000_overlap_ha=3.2, natura2000_sites_in_buffer=1, distance_to_natura2000_km=0.0),
        "DEU",
        [site("DE1", 0.0, 3.2)],
    )
    art = inside.screening.habitats_directive_art6_3
    assert art.verdict == "appropriate assessment required" and "DE1" in art.reason
    assert art.natura2000_sites is not None and art.natura2000_sites[0].site_code == "DE1"

    near = evaluate(
        metrics(
            natura2000_sites_in_buffer=2,
            distance_to_natura2000_km=1.4,
            natura2000_sites_in_buffer_not_overlapped=2,
            distance_to_natura2000_not_overlapped_km=1.4,
        ),
        "DEU",
        [site("DE3", 3.1), site("DE2", 1.4)],
    )
    art = near.screening.habitats_directive_art6_3
    assert art.verdict == "cannot be excluded" and "DE2 at 1.40 km" in art.reason
    assert [s.site_code for s in art.natura2000_sites or []] == ["DE2", "DE3"]  # nearest first
    assert status(near, "EU-HD-6.3-ZONE").status == "triggered"

    none = evaluate(metrics(), "DEU", [])
    assert none.screening.habitats_directive_art6_3.verdict == "not required"
    unknown = evaluate(metrics(), "DEU", None)
    assert unknown.screening.habitats_directive_art6_3.verdict == "cannot be excluded"


def test_annex_iii_lists_touched_criteria_with_evidence(metrics: MetricsFactory) -> None:
    r = evaluate(metrics(wetland_ratio=0.2, wetland_area_ha=1.6, distance_to_settlement_km=0.3), "DEU", [])
    found = {f.criterion: f for f in r.screening.eia_annex_iii}
    assert "2(c)(i)" in found and "2(c)(vii)" in found
    wet = found["2(c)(i)"]
    assert "wetlands" in wet.text and wet.section.startswith("Location")
    ids = {e.rule_id for e in wet.evidence}
    assert {"EU-WETLAND-WATER", "DEU-BNATSCHG-30"} <= ids
    assert all(e.message and e.metrics for e in wet.evidence)
    codes = [f.criterion for f in r.screening.eia_annex_iii]
    assert codes == sorted(codes, key=list(packs.annex_iii()).index)
    # a clean project touches no location criterion
    clean = evaluate(metrics(), "DEU", [])
    assert not any(f.criterion.startswith("2") for f in clean.screening.eia_annex_iii)


def test_wrongly_typed_metric_is_a_server_error_not_a_verdict(metrics: MetricsFactory) -> None:
    from aethera.errors import AnalysisError

    with pytest.raises(AnalysisError, match="aoi_area_ha"):
        evaluate(metrics(aoi_area_ha="8"), "DEU", [])


def test_nan_counts_as_not_computed(metrics: MetricsFactory) -> None:
    r = evaluate(metrics(mean_slope_deg=float("nan")), "DEU", [])
    assert status(r, "EU-STEEP-TERRAIN").status == "not_evaluable"


def test_result_round_trips_through_json(metrics: MetricsFactory) -> None:
    r = evaluate(metrics(), "GRC", [])
    assert msgspec.json.decode(msgspec.json.encode(r)) == to_builtins(r)
