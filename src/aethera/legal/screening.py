"""The two screening conclusions a consultant needs first: Habitats Directive Art. 6(3) and EIA Annex III.

Art. 6(3): a project needs an appropriate assessment unless significant effects on Natura 2000 sites can
be excluded on objective information (CJEU C-127/02). This module states that verdict from the sites in
the zone of influence; missing data gives "cannot be excluded", never "not required".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from aethera.legal.packs import Rule, annex_iii

Art63Verdict = Literal["appropriate assessment required", "not required", "cannot be excluded"]


class NaturaSite(msgspec.Struct, kw_only=True):
    site_code: str
    name: str | None = None
    distance_km: float | None = None  # from the AOI boundary; 0 when the AOI overlaps or touches it
    overlap_ha: float | None = None
    site_type: str | None = None


class HabitatsScreening(msgspec.Struct, kw_only=True):
    verdict: Art63Verdict
    reason: str
    buffer_km: float | None
    natura2000_sites: list[NaturaSite] | None
    reference: str = "Council Directive 92/43/EEC, Art. 6(3); CJEU C-127/02 Waddenzee"


class Evidence(msgspec.Struct, kw_only=True):
    rule_id: str
    rule_name: str
    severity: str
    message: str
    metrics: dict[str, Any]


class AnnexFinding(msgspec.Struct, kw_only=True):
    criterion: str  # e.g. "2(c)(v)"
    section: str
    text: str
    evidence: list[Evidence]


class Screening(msgspec.Struct, kw_only=True):
    habitats_directive_art6_3: HabitatsScreening
    eia_annex_iii: list[AnnexFinding]


def coerce_sites(sites: Sequence[Any] | None) -> list[NaturaSite] | None:
    """Sites as given by the pipeline (Structs, dicts or objects with these attributes) as NaturaSite."""
    if sites is None:
        return None
    out = []
    for s in sites:
        get = s.get if isinstance(s, Mapping) else (lambda k, d=None, _s=s: getattr(_s, k, d))
        out.append(
            NaturaSite(
                site_code=str(get("site_code")),
                name=get("name"),
                distance_km=get("distance_km"),
                overlap_ha=get("overlap_ha"),
                site_type=get("site_type", get("type")),
            )
        )
    return sorted(out, key=lambda x: (x.distance_km is None, x.distance_km or 0.0, x.site_code))


def habitats_screening(metrics: Mapping[str, Any], sites: list[NaturaSite] | None) -> HabitatsScreening:
    buffer_km = metrics.get("buffer_km")
    overlap_ha = metrics.get("natura2000_overlap_ha")
    zone = f"{buffer_km:g} km zone of influence" if buffer_km is not None else "zone of influence"
    inside = [s for s in (sites or []) if (s.overlap_ha or 0) > 0 or s.distance_km == 0]
    if inside or (overlap_ha or 0) > 0:
        names = ", ".join(s.site_code for s in inside) or "Natura 2000 land"
        return HabitatsScreening(
            verdict="appropriate assessment required",
            buffer_km=buffer_km,
            natura2000_sites=sites,
            reason=f"The AOI overlaps or touches {names}: a significant effect is likely and cannot be "
            "excluded on objective information, so an appropriate assessment is required.",
        )
    if sites is None or overlap_ha is None:
        return HabitatsScreening(
            verdict="cannot be excluded",
            buffer_km=buffer_km,
            natura2000_sites=sites,
            reason=f"Natura 2000 sites in the {zone} could not be determined for this run; "
            "significant effects cannot be excluded without that information.",
        )
    if sites:
        nearest = sites[0]
        dist = f"{nearest.distance_km:.2f} km" if nearest.distance_km is not None else "an unknown distance"
        return HabitatsScreening(
            verdict="cannot be excluded",
            buffer_km=buffer_km,
            natura2000_sites=sites,
            reason=f"{len(sites)} Natura 2000 site(s) in the {zone}, nearest {nearest.site_code} at {dist}: "
            "a screening for appropriate assessment must show that significant effects (e.g. on mobile "
            "species, hydrology or disturbance) can be excluded.",
        )
    return HabitatsScreening(
        verdict="not required",
        buffer_km=buffer_km,
        natura2000_sites=sites,
        reason=f"No Natura 2000 site overlaps the AOI or lies in the {zone}. Effects on sites farther away "
        "(e.g. on migratory birds for wind farms) are outside this screening.",
    )


def annex_iii_findings(triggered: Sequence[tuple[Rule, str, dict[str, Any]]]) -> list[AnnexFinding]:
    """The Annex III criteria the triggered rules touch, each with those rules' findings as evidence."""
    criteria = annex_iii()
    by_code: dict[str, list[Evidence]] = {}
    for rule, message, used in triggered:
        for code in rule.annex_iii:
            by_code.setdefault(code, []).append(
                Evidence(rule_id=rule.id, rule_name=rule.name, severity=rule.severity, message=message, metrics=used)
            )
    order = list(criteria)  # file order: 1(a) .. 3(h)
    return [
        AnnexFinding(criterion=code, section=criteria[code].section, text=criteria[code].text, evidence=ev)
        for code, ev in sorted(by_code.items(), key=lambda kv: order.index(kv[0]))
    ]
