"""No verdict without evidence: every rule of every pack triggers on full evidence, passes on full
evidence, and is not_evaluable when the evidence it needs is missing or insufficient (generated from the
pack definitions). Also: stand-ins may trigger but never pass, the pack's coverage threshold, and
messages that show why a threshold test failed."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from aethera.errors import RulePackError
from aethera.legal import templates
from aethera.legal.conditions import Leaf, Node, Not, metrics_of
from aethera.legal.conditions import evaluate as evaluate_condition
from aethera.legal.engine import evaluate
from aethera.legal.metrics import METRICS, STAND_IN, Provenance
from aethera.legal.packs import DEFAULT_MIN_COVERAGE, Rule, load_all_packs, load_pack, parse_pack

PACKS = load_all_packs()
CASES = [(pid, r) for pid, p in PACKS.items() for r in p.rules]
# Metrics that come from the run's parameters or the AOI geometry: never partial, never a stand-in.
PARAMETER_METRICS = {"project_type", "capacity_mw", "buffer_km", "aoi_area_ha"}


def _constants(node: Node, out: dict[str, set[Any]]) -> None:
    if isinstance(node, Leaf):
        for _op, target in node.tests:
            out.setdefault(node.metric, set()).update(target if isinstance(target, tuple) else (target,))
        return
    for m in (node.member,) if isinstance(node, Not) else node.members:
        _constants(m, out)


def _candidates(metric: str, constants: set[Any]) -> list[Any]:
    if METRICS[metric].type is str:
        return sorted(constants | {"solar", "wind", "other"})
    step = 1 if METRICS[metric].type is int else 1e-3
    values = {v + d for v in constants for d in (-step, 0, step)}
    return sorted(v for v in values if v >= 0)


def _base(_rule: Rule) -> dict[str, Any]:
    """Every metric filled with a plain value, so only the rule's own metrics decide."""
    out: dict[str, Any] = {}
    for name, spec in METRICS.items():
        out[name] = "solar" if spec.type is str else (0 if spec.type is int else 0.5)
    return out


LAND_COVER_RATIOS = {
    "water_ratio",
    "wetland_ratio",
    "agricultural_ratio",
    "forest_ratio",
    "shrub_ratio",
    "artificial_ratio",
    "natural_habitat_ratio",
}
LAND_COVER_AREAS = {"forest_area_ha", "wetland_area_ha"}
INDEX_SCORES = {"biodiversity_sensitivity_score", "resm_score", "ahsm_score", "cim_score"}
STAND_IN_DISTANCES = {"distance_to_water_km", "distance_to_settlement_km"}


def _insufficient(m: dict[str, Any], names: list[str]) -> tuple[dict[str, Any], dict[str, Provenance]]:
    """The evidence a run really lacks, metric by metric: land cover on half the AOI (the truth anywhere
    the uncovered half allows), water and settlements from a CORINE stand-in, and for the rest (layers
    with no coverage measure, parameters) the value missing altogether."""
    values: dict[str, Any] = {}
    prov: dict[str, Provenance] = {}
    c = 0.5
    for n in names:
        v = m[n]
        if n in LAND_COVER_RATIOS:
            prov[n] = Provenance(source="land_cover", coverage_ratio=c, lower=v * c, upper=v * c + 1 - c)
        elif n in LAND_COVER_AREAS:
            prov[n] = Provenance(source="land_cover", coverage_ratio=c, lower=v, upper=v + 10.0)
        elif n == "land_use_change_tco2e":
            prov[n] = Provenance(source="land_cover", coverage_ratio=c, lower=v * c)
        elif n in INDEX_SCORES:
            prov[n] = Provenance(source="indices", coverage_ratio=c, lower=max(0.0, v - 20), upper=min(100.0, v + 20))
        elif n in STAND_IN_DISTANCES:
            prov[n] = Provenance(source=STAND_IN, resolves=False, lower=0.0, upper=v)
        elif n == "settlements_within_1km":
            prov[n] = Provenance(source=STAND_IN, resolves=False, lower=float(min(v, 1)))
        else:
            values[n] = None
    return values, prov


def _status(pid: str, rule: Rule, metrics: dict[str, Any], provenance: dict[str, Provenance] | None = None) -> str:
    country = None if pid == "EU" else pid
    result = evaluate(metrics, country, [], provenance=provenance)
    return next(s for s in result.statuses if s.rule_id == rule.id).status


@pytest.mark.parametrize(("pid", "rule"), CASES, ids=[r.id for _, r in CASES])
def test_every_rule_triggers_passes_and_refuses_a_verdict_without_evidence(pid: str, rule: Rule) -> None:
    consts: dict[str, set[Any]] = {}
    _constants(rule.condition, consts)
    names = metrics_of(rule.condition)
    trigger = passing = not_evaluable = None
    for combo in itertools.product(*(_candidates(n, consts[n]) for n in names)):
        m = {**_base(rule), **dict(zip(names, combo))}
        outcome = evaluate_condition(rule.condition, m)
        if outcome and trigger is None:
            trigger = m
        elif outcome is False:
            passing = passing or m
            changes, prov = _insufficient(m, names)
            weak_status = _status(pid, rule, {**m, **changes}, prov)
            if weak_status == "not_evaluable":
                not_evaluable = (m, weak_status)
        if trigger and passing and not_evaluable:
            break
    assert trigger is not None and passing is not None, rule.id
    assert _status(pid, rule, trigger) == "triggered", rule.id
    assert _status(pid, rule, passing) == "passed", rule.id
    assert not_evaluable is not None, f"{rule.id}: no passing case turns not_evaluable on insufficient evidence"
    # and with nothing measured at all the rule is never a pass
    assert _status(pid, rule, {**passing, **dict.fromkeys(names)}) != "passed", rule.id


@pytest.mark.parametrize(("pid", "rule"), CASES, ids=[r.id for _, r in CASES])
def test_insufficient_evidence_never_turns_a_trigger_into_a_pass(pid: str, rule: Rule) -> None:
    """Weak evidence with bounds that contain the measured value can only keep or lose a verdict."""
    consts: dict[str, set[Any]] = {}
    _constants(rule.condition, consts)
    names = metrics_of(rule.condition)
    measured = [n for n in names if n not in PARAMETER_METRICS and METRICS[n].type is not str]
    for combo in itertools.islice(itertools.product(*(_candidates(n, consts[n]) for n in names)), 400):
        m = {**_base(rule), **dict(zip(names, combo))}
        full = _status(pid, rule, m)
        prov = {
            n: Provenance(source="land_cover", coverage_ratio=0.5, lower=m[n] * 0.5, upper=m[n] * 1.5 + 0.5)
            for n in measured
        }
        assert _status(pid, rule, m, prov) in (full, "not_evaluable"), (rule.id, m)


def test_a_stand_in_can_trigger_but_never_pass(metrics: Any) -> None:
    stand_in = {
        "distance_to_water_km": Provenance(
            source=STAND_IN, resolves=False, lower=0.0, upper=7.2, note="CORINE cannot show streams"
        )
    }
    far = evaluate(metrics(distance_to_water_km=7.2), "ESP", [], provenance=stand_in)
    st = next(s for s in far.statuses if s.rule_id == "ESP-TRLA-6-POLICIA")
    assert st.status == "not_evaluable" and st.passed is None
    assert "CORINE cannot show streams" in st.message and st.details["insufficient_evidence"]
    # the same distance from a real water layer is evidence: the rule passes
    real = evaluate(
        metrics(distance_to_water_km=7.2), "ESP", [], provenance={"distance_to_water_km": Provenance(source="water")}
    )
    assert next(s for s in real.statuses if s.rule_id == "ESP-TRLA-6-POLICIA").status == "passed"
    # a CORINE water polygon 20 m away shows water is there: triggered, and the message says on what
    near = evaluate(
        metrics(distance_to_water_km=0.02),
        "ESP",
        [],
        provenance={"distance_to_water_km": Provenance(source=STAND_IN, resolves=False, lower=0.0, upper=0.02)},
    )
    st = next(s for s in near.statuses if s.rule_id == "ESP-TRLA-6-POLICIA")
    assert st.status == "triggered" and "stand-in" in st.message


def test_coverage_threshold_is_per_pack_and_partial_land_can_still_trigger(metrics: Any) -> None:
    assert load_pack("EU").min_coverage == DEFAULT_MIN_COVERAGE == 0.9
    # 80 % of the AOI covered, all of it natural: the whole AOI is 80-100 % natural, so EU-LAND-TAKE
    # (>= 50 %) is triggered whatever the gap holds
    prov = {"natural_habitat_ratio": Provenance(source="land_cover", coverage_ratio=0.8, lower=0.8, upper=1.0)}
    r = evaluate(metrics(aoi_area_ha=60.0, natural_habitat_ratio=1.0), None, [], provenance=prov)
    assert next(s for s in r.statuses if s.rule_id == "EU-LAND-TAKE").status == "triggered"
    # a quarter covered, all natural: 25-100 %: not evaluable (the old engine said "passed ... 25 %")
    prov = {"natural_habitat_ratio": Provenance(source="land_cover", coverage_ratio=0.25, lower=0.25, upper=1.0)}
    r = evaluate(metrics(aoi_area_ha=60.0, natural_habitat_ratio=1.0), None, [], provenance=prov)
    st = next(s for s in r.statuses if s.rule_id == "EU-LAND-TAKE")
    assert st.status == "not_evaluable" and "25.00% of the AOI" in st.message and "90%" in st.message
    # at 95 % coverage (above the threshold) the measured share is taken as evidence
    prov = {"natural_habitat_ratio": Provenance(source="land_cover", coverage_ratio=0.95, lower=0.0, upper=0.05)}
    r = evaluate(metrics(aoi_area_ha=60.0, natural_habitat_ratio=0.0), None, [], provenance=prov)
    assert next(s for s in r.statuses if s.rule_id == "EU-LAND-TAKE").status == "passed"


def test_a_pack_sets_its_own_coverage_threshold() -> None:
    text = """
[pack]
id = "TST"
name = "Test"
version = "1"
description = "test"
min_coverage = 0.5

[[rules]]
id = "TST-1"
name = "forest"
description = "d"
category = "forest"
severity = "low"
condition = { forest_ratio = { ">" = 0.1 } }
message = "m"
pass_message = "p"
references = ["r"]
heuristic = true
"""
    pack = parse_pack(text)
    assert pack.min_coverage == 0.5 and pack.rules[0].min_coverage == 0.5
    with pytest.raises(RulePackError, match="min_coverage"):
        parse_pack(text.replace("min_coverage = 0.5", "min_coverage = 1.5"))


def test_messages_show_why_a_threshold_test_failed(metrics: Any) -> None:
    r = evaluate(metrics(aoi_area_ha=60.0, natural_habitat_ratio=0.4996), None, [])
    st = next(s for s in r.statuses if s.rule_id == "EU-LAND-TAKE")
    assert st.status == "passed" and "49.96%" in st.message and "50.0%" not in st.message
    assert templates.fill("{forest_ratio:.1%}", {"forest_ratio": 0.25}, {"forest_ratio": [0.1]}) == "25.0%"
    assert templates.fill("{forest_ratio:.0%}", {"forest_ratio": 0.09999}, {"forest_ratio": [0.1]}) == "9.999%"


def test_zone_rules_see_a_second_site_next_to_an_overlapped_one(metrics: Any, site: Any) -> None:
    # The AOI overlaps DE1 and a second Natura 2000 site lies 0.7 km away; a protected area too.
    m = metrics(
        natura2000_overlap_ha=3.0,
        protected_overlap_ha=3.0,
        protected_overlap_pct=30.0,
        natura2000_sites_in_buffer=2,
        distance_to_natura2000_km=0.0,
        distance_to_protected_km=0.0,
        natura2000_sites_in_buffer_not_overlapped=1,
        distance_to_natura2000_not_overlapped_km=0.7,
        protected_areas_within_1km_not_overlapped=1,
        distance_to_protected_not_overlapped_km=0.7,
    )
    for country, zone_rule in (("ESP", "ESP-L21-2013-7.2B"), ("FRA", "FRA-L414-4-ZONE"), ("GRC", "GRC-4014-ZONE")):
        r = evaluate(m, country, [site("DE1", 0.0, 3.0), site("DE2", 0.7)])
        got = {s.rule_id: s for s in r.statuses}
        assert got["EU-HD-6.3-ZONE"].status == "triggered" and "0.70 km" in got["EU-HD-6.3-ZONE"].message
        assert got["EU-PROTECTED-NEAR"].status == "triggered"
        assert got[zone_rule].status == "triggered", zone_rule
