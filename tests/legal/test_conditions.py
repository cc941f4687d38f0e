"""Condition grammar: parsing checks at load, three-valued evaluation, nesting to any depth."""

from __future__ import annotations

from typing import Any

import pytest

from aethera.errors import RulePackError
from aethera.legal.conditions import All, AnyOf, Leaf, Not, evaluate, metrics_of, parse_condition


def ev(raw: dict[str, Any], **metrics: Any) -> bool | None:
    return evaluate(parse_condition(raw), metrics)


@pytest.mark.parametrize(
    ("op", "target", "value", "expected"),
    [
        (">", 1.0, 1.0, False),
        (">", 1.0, 1.01, True),
        (">=", 1.0, 1.0, True),
        (">=", 1.0, 0.99, False),
        ("<", 1.0, 1.0, False),
        ("<", 1.0, 0.99, True),
        ("<=", 1.0, 1.0, True),
        ("<=", 1.0, 1.01, False),
        ("==", 2.0, 2, True),
        ("==", 2.0, 2.5, False),
        ("!=", 2.0, 2.5, True),
        ("!=", 2.0, 2.0, False),
        ("in", [1.0, 2.0], 2.0, True),
        ("in", [1.0, 2.0], 3.0, False),
        ("not_in", [1.0, 2.0], 3.0, True),
        ("not_in", [1.0, 2.0], 1.0, False),
    ],
)
def test_every_operator_on_a_number(op: str, target: Any, value: float, expected: bool) -> None:
    assert ev({"distance_to_water_km": {op: target}}, distance_to_water_km=value) is expected


def test_text_metric_operators() -> None:
    assert ev({"project_type": {"==": "wind"}}, project_type="wind") is True
    assert ev({"project_type": {"in": ["solar", "wind"]}}, project_type="hydro") is False
    assert ev({"project_type": {"not_in": ["solar"]}}, project_type="wind") is True


def test_several_operators_in_one_leaf_must_all_hold() -> None:
    band = {"aoi_area_ha": {">=": 2.0, "<": 10.0}}
    assert [ev(band, aoi_area_ha=v) for v in (1.99, 2.0, 9.99, 10.0)] == [False, True, True, False]


def test_nesting_to_any_depth() -> None:
    # triggered when: wind AND (near a settlement OR NOT (far from water AND no wetland))
    raw = {
        "all": [
            {"project_type": {"==": "wind"}},
            {
                "any": [
                    {"distance_to_settlement_km": {"<": 1.0}},
                    {
                        "not": {
                            "all": [
                                {"distance_to_water_km": {">=": 0.5}},
                                {"not": {"wetland_ratio": {">": 0}}},
                            ]
                        }
                    },
                ]
            },
        ]
    }
    node = parse_condition(raw)
    assert isinstance(node, All) and isinstance(node.members[1], AnyOf)
    assert isinstance(node.members[1].members[1], Not)
    base = dict(project_type="wind", distance_to_settlement_km=2.0, distance_to_water_km=1.0, wetland_ratio=0.0)
    assert evaluate(node, base) is False
    assert evaluate(node, {**base, "distance_to_settlement_km": 0.5}) is True
    assert evaluate(node, {**base, "distance_to_water_km": 0.2}) is True
    assert evaluate(node, {**base, "wetland_ratio": 0.1}) is True
    assert evaluate(node, {**base, "project_type": "solar", "wetland_ratio": 0.1}) is False
    assert metrics_of(node) == ["project_type", "distance_to_settlement_km", "distance_to_water_km", "wetland_ratio"]
    # ten levels of `not` around a leaf: even count, same truth value
    deep: dict[str, Any] = {"water_ratio": {">": 0.1}}
    for _ in range(10):
        deep = {"not": deep}
    assert ev(deep, water_ratio=0.2) is True and ev(deep, water_ratio=0.0) is False


def test_missing_metric_is_unknown_unless_the_outcome_is_already_certain() -> None:
    leaf = {"mean_slope_deg": {">": 15}}
    assert ev(leaf) is None and ev(leaf, mean_slope_deg=None) is None
    assert ev({"not": leaf}) is None
    # all: one False member decides; otherwise unknown
    assert ev({"all": [{"project_type": {"==": "wind"}}, leaf]}, project_type="solar") is False
    assert ev({"all": [{"project_type": {"==": "wind"}}, leaf]}, project_type="wind") is None
    # any: one True member decides; otherwise unknown
    assert ev({"any": [{"water_ratio": {">": 0.1}}, leaf]}, water_ratio=0.5) is True
    assert ev({"any": [{"water_ratio": {">": 0.1}}, leaf]}, water_ratio=0.0) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"protected_overlap_hectares": {">": 0}},
            "unknown metric 'protected_overlap_hectares' (did you mean protected_overlap_ha?)",
        ),
        ({"aoi_area_ha": {"=>": 1}}, "unknown operator '=>'"),
        ({"aoi_area_ha": {"~=": 1}}, "unknown operator"),
        ({"project_type": {">": "solar"}}, "does not apply to a text metric"),
        ({"aoi_area_ha": {">": "10"}}, "needs a finite number"),
        ({"aoi_area_ha": {">": True}}, "needs a finite number"),
        ({"project_type": {"==": 3}}, "needs a string"),
        ({"natura2000_sites_in_buffer": {"==": 1.5}}, "needs an integer"),
        ({"aoi_area_ha": {"in": 3}}, "non-empty list"),
        ({"aoi_area_ha": {"in": []}}, "non-empty list"),
        ({"aoi_area_ha": {}}, "needs a table"),
        ({"aoi_area_ha": {">": 1}, "water_ratio": {">": 0}}, "exactly one key"),
        ({"all": []}, "non-empty list"),
        ({"any": {"aoi_area_ha": {">": 1}}}, "non-empty list"),
        ({"all": [{"any": [{"not": {"aoi_area_hectares": {">": 1}}}]}]}, "condition.all[0].any[0].not: unknown metric"),
        ([], "exactly one key"),
    ],
)
def test_malformed_conditions_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(RulePackError) as info:
        parse_condition(raw)
    assert message in info.value.detail


def test_parsed_leaf_keeps_values() -> None:
    node = parse_condition({"project_type": {"in": ["solar", "wind"]}})
    assert node == Leaf("project_type", (("in", ("solar", "wind")),))
