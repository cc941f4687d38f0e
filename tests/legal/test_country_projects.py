"""Per country, three projects: clearly fine, borderline at a threshold, clearly violating.

Each case lists the verdicts it must get: overall compliance, the Art. 6(3) verdict, and the status of
the rules the case is about (rules not listed may be anything).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aethera.legal.engine import evaluate

MetricsFactory = Callable[..., dict[str, Any]]
T, P, N = "triggered", "passed", "not_evaluable"
REQUIRED, NOT_REQUIRED, CANNOT_EXCLUDE = "appropriate assessment required", "not required", "cannot be excluded"

INSIDE_NATURA = dict(
    natura2000_overlap_ha=6.0,
    protected_overlap_ha=6.0,
    protected_overlap_pct=30.0,
    distance_to_protected_km=0.0,
    distance_to_natura2000_km=0.0,
    natura2000_sites_in_buffer=1,
    protected_areas_in_buffer=1,
    aoi_area_ha=20.0,
)

CASES: list[tuple[str, str, dict[str, Any], bool, str, dict[str, str]]] = [
    # --- Germany ---
    (
        "DEU",
        "fine: 8 ha solar on farmland and brownfield",
        {},
        True,
        NOT_REQUIRED,
        {"DEU-UVPG-18.7-A": T, "DEU-UVPG-18.7-X": P, "DEU-BNATSCHG-34": P, "DEU-WHG-38": P, "DEU-BWALDG-9": P},
    ),
    (
        "DEU",
        "borderline: solar exactly 10 ha, exactly 5 m from water",
        dict(aoi_area_ha=10.0, distance_to_water_km=0.005),
        True,
        NOT_REQUIRED,
        {"DEU-UVPG-18.7-X": T, "DEU-UVPG-18.7-A": P, "DEU-WHG-38": P},
    ),
    (
        "DEU",
        "borderline: wind exactly 1 km from a settlement, 15 MW",
        dict(project_type="wind", capacity_mw=15.0, distance_to_settlement_km=1.0),
        True,
        NOT_REQUIRED,
        {"DEU-WIND-SETBACK": P, "DEU-UVPG-1.6-A": T, "DEU-UVPG-1.6-X": P, "DEU-BNATSCHG-45B": P},
    ),
    (
        "DEU",
        "violating: wind inside a Natura 2000 site with wetland and forest",
        dict(
            INSIDE_NATURA,
            project_type="wind",
            capacity_mw=120.0,
            wetland_ratio=0.1,
            wetland_area_ha=2.0,
            forest_ratio=0.4,
            forest_area_ha=8.0,
            distance_to_settlement_km=0.6,
        ),
        False,
        REQUIRED,
        {
            "DEU-BNATSCHG-34": T,
            "EU-HD-6.3-OVERLAP": T,
            "DEU-BNATSCHG-23-26": T,
            "DEU-BNATSCHG-30": T,
            "DEU-BWALDG-9": T,
            "DEU-WIND-SETBACK": T,
            "DEU-UVPG-1.6-X": T,
            "DEU-BNATSCHG-45B": T,
            "EU-HD-6.3-ZONE": P,
        },
    ),
    # --- France ---
    (
        "FRA",
        "fine: 0.2 MW solar",
        dict(capacity_mw=0.2, aoi_area_ha=0.4),
        True,
        NOT_REQUIRED,
        {"FRA-R122-2-PV-SYSTEMATIC": P, "FRA-R122-2-PV-CASE": P, "FRA-L414-4": P, "FRA-APER-AGRICULTURE": P},
    ),
    (
        "FRA",
        "borderline: solar exactly 1 MWc; wind exactly 500 m",
        dict(capacity_mw=1.0),
        True,
        NOT_REQUIRED,
        {"FRA-R122-2-PV-SYSTEMATIC": T, "FRA-R122-2-PV-CASE": P},
    ),
    (
        "FRA",
        "borderline: wind exactly 500 m from a settlement, 25 ha forest",
        dict(
            project_type="wind",
            distance_to_settlement_km=0.5,
            forest_ratio=0.5,
            forest_area_ha=25.0,
            wetland_area_ha=0.09,
        ),
        True,
        NOT_REQUIRED,
        {
            "FRA-L515-44": P,
            "FRA-ICPE-2980": T,
            "FRA-DEFRICHEMENT-SYSTEMATIC": T,
            "FRA-DEFRICHEMENT-CASE": P,
            "FRA-IOTA-3.3.1.0": P,
        },
    ),
    (
        "FRA",
        "violating: wind 300 m from a village, no Natura site",
        dict(project_type="wind", distance_to_settlement_km=0.3, agricultural_ratio=0.9),
        False,
        NOT_REQUIRED,
        {"FRA-L515-44": T, "FRA-L414-4": P, "FRA-APER-AGRICULTURE": P},
    ),
    (
        "FRA",
        "violating: solar on farmland inside Natura 2000",
        dict(INSIDE_NATURA, agricultural_ratio=0.7, wetland_area_ha=1.5),
        False,
        REQUIRED,
        {"FRA-L414-4": T, "FRA-APER-AGRICULTURE": T, "FRA-IOTA-3.3.1.0": T, "FRA-L414-4-ZONE": P},
    ),
    # --- Italy ---
    (
        "ITA",
        "fine: 4 MW solar",
        {},
        True,
        NOT_REQUIRED,
        {"ITA-SCREENING-REGIONAL": T, "ITA-VIA-STATE-PV": P, "ITA-DL63-2024-AGRICULTURE": P, "ITA-DPR357-5": P},
    ),
    (
        "ITA",
        "borderline: solar exactly 10 MW, exactly 150 m from a river",
        dict(capacity_mw=10.0, distance_to_water_km=0.15),
        True,
        NOT_REQUIRED,
        {"ITA-VIA-STATE-PV": P, "ITA-SCREENING-REGIONAL": T, "ITA-DLGS42-142-WATER": P},
    ),
    (
        "ITA",
        "borderline: wind just above 30 MW, 149 m from a river",
        dict(project_type="wind", capacity_mw=30.01, distance_to_water_km=0.149),
        True,
        NOT_REQUIRED,
        {"ITA-VIA-STATE-WIND": T, "ITA-SCREENING-REGIONAL": P, "ITA-DLGS42-142-WATER": T},
    ),
    (
        "ITA",
        "violating: solar on farmland inside Natura 2000",
        dict(INSIDE_NATURA, agricultural_ratio=0.8, capacity_mw=12.0),
        False,
        REQUIRED,
        {"ITA-DPR357-5": T, "ITA-DLGS42-142-PARKS": T, "ITA-DL63-2024-AGRICULTURE": T, "ITA-VIA-STATE-PV": T},
    ),
    # --- Greece ---
    (
        "GRC",
        "fine: 4 MW solar",
        {},
        True,
        NOT_REQUIRED,
        {"GRC-4014-CLASS-A-SOLAR": P, "GRC-998-FOREST": P, "GRC-4014-EOA": P, "GRC-RES-SETBACK": P},
    ),
    (
        "GRC",
        "borderline: wind exactly 500 m away, shrub exactly 10 %",
        dict(project_type="wind", distance_to_settlement_km=0.5, shrub_ratio=0.1),
        True,
        NOT_REQUIRED,
        {"GRC-RES-SETBACK": P, "GRC-998-FOREST": P, "GRC-4014-CLASS-A-WIND": T},
    ),
    (
        "GRC",
        "violating: wind in Natura 2000 forest land next to a village",
        dict(
            INSIDE_NATURA,
            project_type="wind",
            forest_ratio=0.2,
            forest_area_ha=4.0,
            shrub_ratio=0.5,
            distance_to_settlement_km=0.2,
        ),
        False,
        REQUIRED,
        {"GRC-4014-EOA": T, "GRC-998-FOREST": T, "GRC-RES-SETBACK": T, "GRC-4014-ZONE": P},
    ),
    # --- Spain ---
    (
        "ESP",
        "fine: 8 ha solar",
        {},
        True,
        NOT_REQUIRED,
        {"ESP-L21-2013-ANEXO-I-SOLAR": P, "ESP-L21-2013-ANEXO-II-SOLAR": P, "ESP-L42-2007-46": P, "ESP-MONTES-40": P},
    ),
    (
        "ESP",
        "borderline: solar exactly 100 ha, exactly 100 m from a river, Natura site 3 km away",
        dict(
            aoi_area_ha=100.0,
            capacity_mw=50.0,
            distance_to_water_km=0.1,
            natura2000_sites_in_buffer=1,
            distance_to_natura2000_km=3.0,
            natura2000_sites_in_buffer_not_overlapped=1,
            distance_to_natura2000_not_overlapped_km=3.0,
        ),
        True,
        CANNOT_EXCLUDE,
        {
            "ESP-L21-2013-ANEXO-I-SOLAR": P,
            "ESP-L21-2013-ANEXO-II-SOLAR": T,
            "ESP-TRLA-6-POLICIA": P,
            "ESP-L21-2013-7.2B": T,
            "EU-HD-6.3-ZONE": T,
        },
    ),
    (
        "ESP",
        "violating: wind in Red Natura 2000 on scrubland by a river",
        dict(INSIDE_NATURA, project_type="wind", capacity_mw=45.0, shrub_ratio=0.6, distance_to_water_km=0.02),
        False,
        REQUIRED,
        {
            "ESP-L42-2007-46": T,
            "ESP-L21-2013-ANEXO-I-WIND": T,
            "ESP-L21-2013-ANEXO-II-WIND": P,
            "ESP-MONTES-40": T,
            "ESP-TRLA-6-POLICIA": T,
            "ESP-L21-2013-7.2B": P,
        },
    ),
]


def _sites(m: dict[str, Any]) -> list[dict[str, Any]]:
    n = m["natura2000_sites_in_buffer"]
    if not n:
        return []
    overlap = m["natura2000_overlap_ha"]
    return [
        {
            "site_code": f"SITE{i}",
            "name": f"Site {i}",
            "distance_km": m["distance_to_natura2000_km"],
            "overlap_ha": overlap if i == 0 else 0.0,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("country", "label", "changes", "compliant", "art63", "expected"),
    CASES,
    ids=[f"{c[0]}-{c[1].split(':')[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_country_project(
    metrics: MetricsFactory,
    country: str,
    label: str,
    changes: dict[str, Any],
    compliant: bool,
    art63: str,
    expected: dict[str, str],
) -> None:
    m = metrics(**changes)
    r = evaluate(m, country, _sites(m))
    assert r.packs_applied == ["EU", country]
    got = {s.rule_id: s.status for s in r.statuses}
    assert {rid: got[rid] for rid in expected} == expected, label
    assert r.overall_compliant is compliant, (label, r.overall_reason)
    assert r.screening.habitats_directive_art6_3.verdict == art63, label
    if not compliant:
        assert r.critical_violations and all(s.severity == "critical" for s in r.critical_violations)


def test_every_country_has_the_three_kinds_of_case() -> None:
    for country in ("DEU", "FRA", "ITA", "GRC", "ESP"):
        kinds = {c[1].split(":")[0] for c in CASES if c[0] == country}
        assert kinds == {"fine", "borderline", "violating"}, country
