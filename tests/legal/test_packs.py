"""Rule packs: every shipped pack loads; anything a run could trip on is refused when a pack loads."""

from __future__ import annotations

from importlib import resources

import pytest

from aethera.errors import RulePackError
from aethera.legal import packs
from aethera.legal.conditions import metrics_of
from aethera.legal.metrics import METRICS
from aethera.legal.packs import PACK_FILES, load_all_packs, parse_pack

COUNTRIES = ("DEU", "FRA", "ITA", "GRC", "ESP")


def shipped_text(pack_id: str) -> str:
    return resources.files("aethera.legal").joinpath("packs", PACK_FILES[pack_id]).read_text(encoding="utf-8")


def test_every_registered_pack_loads_and_only_uses_known_metrics() -> None:
    loaded = load_all_packs()
    assert set(loaded) == {"EU", *COUNTRIES}
    for pack in loaded.values():
        assert pack.rules, pack.id
        for rule in pack.rules:
            assert set(rule.metrics) <= set(METRICS), rule.id
            assert set(metrics_of(rule.condition)) <= set(rule.metrics)
            assert rule.references and all(ref.strip() for ref in rule.references)
            assert rule.basis, f"{rule.id}: say where the threshold comes from"
            assert isinstance(rule.heuristic, bool)


def test_packs_cite_the_laws_they_rest_on() -> None:
    loaded = load_all_packs()
    cited = {pid: " ".join(ref for r in p.rules for ref in r.references) for pid, p in loaded.items()}
    assert all(d in cited["EU"] for d in ("92/43/EEC", "2009/147/EC", "2014/52/EU"))
    assert "BNatSchG" in cited["DEU"] and "UVPG" in cited["DEU"]
    assert "Code de l'environnement" in cited["FRA"]
    assert "D.Lgs 152/2006" in cited["ITA"]
    assert "Law 4014/2011" in cited["GRC"]
    assert "Ley 21/2013" in cited["ESP"]


def test_each_pack_marks_heuristics_and_law_numbers() -> None:
    for pack in load_all_packs().values():
        flags = {r.heuristic for r in pack.rules}
        assert flags == {True, False}, f"{pack.id}: expected both law-based and heuristic thresholds"


def test_each_country_has_a_critical_natura_rule() -> None:
    for country in COUNTRIES:
        pack = packs.load_pack(country)
        assert any(r.severity == "critical" and "natura2000_overlap_ha" in metrics_of(r.condition) for r in pack.rules)


MINIMAL = """
[pack]
id = "TST"
name = "Test"
version = "1"
description = "test pack"

[[rules]]
id = "TST-1"
name = "Overlap"
description = "d"
category = "natura2000"
severity = "critical"
condition = { natura2000_overlap_ha = { ">" = 0 } }
message = "overlap {natura2000_overlap_ha:.2f} ha"
pass_message = "no overlap"
references = ["Council Directive 92/43/EEC, Art. 6(3)"]
heuristic = false
annex_iii = ["2(c)(v)"]
"""


def test_minimal_pack_loads() -> None:
    pack = parse_pack(MINIMAL)
    assert pack.id == "TST" and pack.rules[0].metrics == ("natura2000_overlap_ha",)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "natura2000_overlap_ha = {",
            "natura2000_overlap_hectares = {",
            "unknown metric 'natura2000_overlap_hectares'",
        ),
        ('">" = 0', '"=>" = 0', "unknown operator '=>'"),
        ('severity = "critical"', 'severity = "severe"', "severity 'severe' is not one of"),
        ('category = "natura2000"', 'category = "natura"', "category 'natura' is not one of"),
        ("{natura2000_overlap_ha:.2f}", "{natura_overlap_ha:.2f}", "message: unknown metric 'natura_overlap_ha'"),
        ("{natura2000_overlap_ha:.2f}", "{natura2000_overlap_ha:d}", "format spec 'd' does not fit"),
        ("{natura2000_overlap_ha:.2f}", "{natura2000_overlap_ha.real}", "must be a metric name"),
        ("{natura2000_overlap_ha:.2f}", "{natura2000_overlap_ha!r}", "conversions are not allowed"),
        ("{natura2000_overlap_ha:.2f}", "{natura2000_overlap_ha", "malformed template"),
        ('"no overlap"', '"no overlap {0}"', "must be a metric name"),
        ('annex_iii = ["2(c)(v)"]', 'annex_iii = ["2(c)(x)"]', "unknown EIA Annex III criterion"),
        ('references = ["Council Directive 92/43/EEC, Art. 6(3)"]', "references = []", "at least one legal reference"),
        ("heuristic = false", 'heuristic = false\nseverty = "low"', "unknown field"),
        ("heuristic = false\n", "", "heuristic"),
        ('id = "TST"', 'id = "TST"\ncountry = "X"', "unknown field"),
        ("[[rules]]", "[[rules]] x", "not valid TOML"),
    ],
)
def test_broken_pack_is_refused_at_load(old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    with pytest.raises(RulePackError) as info:
        parse_pack(MINIMAL.replace(old, new, 1))
    assert message in info.value.detail


def test_shipped_pack_with_a_metric_typo_is_refused() -> None:
    text = shipped_text("DEU").replace("distance_to_settlement_km = {", "distance_to_setlement_km = {", 1)
    with pytest.raises(RulePackError, match="did you mean distance_to_settlement_km"):
        parse_pack(text, expected_id="DEU")


def test_shipped_pack_with_an_unknown_operator_is_refused() -> None:
    text = shipped_text("FRA").replace('"<" = 0.5', '"lt" = 0.5', 1)
    with pytest.raises(RulePackError, match="unknown operator 'lt'"):
        parse_pack(text, expected_id="FRA")


def test_duplicate_rule_ids_are_refused() -> None:
    rule = MINIMAL[MINIMAL.index("[[rules]]") :]
    with pytest.raises(RulePackError, match="duplicate rule id"):
        parse_pack(MINIMAL + rule)


def test_pack_must_declare_the_id_it_is_registered_under() -> None:
    with pytest.raises(RulePackError, match="declares id 'TST'"):
        parse_pack(MINIMAL, expected_id="DEU")


def test_registry_is_the_only_way_to_a_pack_file() -> None:
    with pytest.raises(KeyError):
        packs.load_pack("../packs/deu")
    assert [p.id for p in packs.packs_for("DEU")] == ["EU", "DEU"]
    assert [p.id for p in packs.packs_for("AUT")] == ["EU"]
    assert [p.id for p in packs.packs_for(None)] == ["EU"]
