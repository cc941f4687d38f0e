"""Rule packs: data files of legal screening rules, found through a fixed registry and checked at load.

`PACK_FILES` is the only way from a pack id to a file: a request's country code is validated first
(`countries.check_country`) and then used as a dictionary key, never to build a path. Loading checks
everything a run could trip on (unknown fields, metrics, operators, severities, categories, template
fields and format specs, EIA Annex III codes, duplicate ids), so a broken pack fails at start-up or in
the test suite, never half-way through a run.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Literal

import msgspec

from aethera.errors import RulePackError
from aethera.legal.conditions import Node, metrics_of, parse_condition
from aethera.legal.templates import check_template

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
CATEGORIES = frozenset(
    {
        "natura2000",
        "protected_areas",
        "biodiversity",
        "water",
        "forest",
        "landscape",
        "land_use",
        "population",
        "hazard",
        "procedure",
        "cumulative",
    }
)

EU_PACK = "EU"
# Below this share of the AOI covered by a metric's layer, the metric is not evidence enough to pass a
# rule (a pack may set its own `min_coverage`).
DEFAULT_MIN_COVERAGE = 0.9
# pack id -> file under legal/packs/. The EU pack applies to every run; a country with no entry gets
# the EU pack alone.
PACK_FILES: dict[str, str] = {
    EU_PACK: "eu.toml",
    "DEU": "deu.toml",
    "FRA": "fra.toml",
    "ITA": "ita.toml",
    "GRC": "grc.toml",
    "ESP": "esp.toml",
}


class _RawRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    description: str
    category: str
    severity: str
    condition: dict[str, Any]
    message: str
    pass_message: str
    references: list[str]
    heuristic: bool
    basis: str = ""
    annex_iii: list[str] = []


class _RawPackInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    version: str
    description: str
    # Least share of the AOI (0..1) a layer must cover for a metric measured on it to count as evidence
    min_coverage: float = DEFAULT_MIN_COVERAGE
    area_crs: str | None = None
    area_crs_basis: str = ""


# How a pack states the CRS its area thresholds are measured in: one EPSG code ("EPSG:2154"), or the
# ETRS89 / UTM zone of the AOI's centroid limited to a range of zones ("utm:28-31").
AREA_CRS_PATTERN = re.compile(r"^(EPSG:(?P<epsg>[0-9]{4,5})|utm:(?P<first>[0-9]{1,2})-(?P<last>[0-9]{1,2}))$")
# Metrics a pack may only use when it states its area CRS (they are measured in it).
NATIONAL_AREA_METRICS = frozenset({"aoi_area_national_ha"})


class _RawPack(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pack: _RawPackInfo
    rules: list[_RawRule]


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """One screening rule. `condition` says when a concern is triggered."""

    id: str
    pack: str
    name: str
    description: str
    category: str
    severity: Severity
    condition: Node
    message: str  # template used when triggered
    pass_message: str  # template used when not triggered
    references: tuple[str, ...]
    heuristic: bool  # True: the threshold is a screening judgement, not a number written in the law
    basis: str  # where the threshold comes from, and any proxy the screening uses
    annex_iii: tuple[str, ...]  # EIA Directive Annex III criteria a trigger touches
    metrics: tuple[str, ...]  # every metric the condition or the templates read
    min_coverage: float = DEFAULT_MIN_COVERAGE  # the pack's coverage threshold (see _RawPackInfo)


class RulePack(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    version: str
    description: str
    rules: tuple[Rule, ...]
    min_coverage: float = DEFAULT_MIN_COVERAGE
    # the CRS the national area thresholds are measured in (see AREA_CRS_PATTERN), and why; None for a
    # pack with no national area rule (the EU pack)
    area_crs: str | None = None
    area_crs_basis: str = ""


class AnnexCriterion(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    section: str
    text: str


@lru_cache(maxsize=1)
def annex_iii() -> dict[str, AnnexCriterion]:
    """EIA Directive 2014/52/EU Annex III criteria by code, e.g. "2(c)(v)"."""
    data = tomllib.loads(resources.files("aethera.legal").joinpath("annex_iii.toml").read_text(encoding="utf-8"))
    sections = data["sections"]
    return {
        code: AnnexCriterion(code=code, section=sections[code[0]], text=text) for code, text in data["criteria"].items()
    }


def parse_pack(text: str, *, expected_id: str | None = None) -> RulePack:
    """Parse and check one pack file's text; RulePackError says what is wrong and where."""
    try:
        raw = msgspec.convert(tomllib.loads(text), _RawPack)
    except tomllib.TOMLDecodeError as exc:
        raise RulePackError(f"rule pack is not valid TOML: {exc}") from None
    except msgspec.ValidationError as exc:
        raise RulePackError(f"rule pack {expected_id or ''} is malformed: {exc}".replace("  ", " ")) from None
    pid = raw.pack.id
    if expected_id is not None and pid != expected_id:
        raise RulePackError(f"rule pack file for {expected_id} declares id {pid!r}")
    if not raw.rules:
        raise RulePackError(f"rule pack {pid} has no rules")
    min_coverage = raw.pack.min_coverage
    if not 0.0 < min_coverage <= 1.0:
        raise RulePackError(f"rule pack {pid}: min_coverage must lie in (0, 1], got {min_coverage!r}")
    area_crs = raw.pack.area_crs
    if area_crs is not None:
        m = AREA_CRS_PATTERN.match(area_crs)
        if m is None:
            raise RulePackError(
                f"rule pack {pid}: area_crs {area_crs!r} is neither 'EPSG:<code>' nor 'utm:<zone>-<zone>'"
            )
        if m["first"] and not 1 <= int(m["first"]) <= int(m["last"]) <= 60:
            raise RulePackError(f"rule pack {pid}: area_crs {area_crs!r}: UTM zones run from 1 to 60, first <= last")
        if not raw.pack.area_crs_basis.strip():
            raise RulePackError(f"rule pack {pid}: area_crs needs an area_crs_basis saying where it comes from")
    criteria = annex_iii()
    rules: list[Rule] = []
    seen: set[str] = set()
    for r in raw.rules:
        where = f"rule pack {pid}, rule {r.id}"
        if r.id in seen:
            raise RulePackError(f"{where}: duplicate rule id")
        seen.add(r.id)
        if r.severity not in SEVERITIES:
            raise RulePackError(f"{where}: severity {r.severity!r} is not one of {', '.join(SEVERITIES)}")
        if r.category not in CATEGORIES:
            raise RulePackError(f"{where}: category {r.category!r} is not one of {', '.join(sorted(CATEGORIES))}")
        if not r.references or not all(isinstance(x, str) and x.strip() for x in r.references):
            raise RulePackError(f"{where}: needs at least one legal reference")
        for code in r.annex_iii:
            if code not in criteria:
                raise RulePackError(f"{where}: unknown EIA Annex III criterion {code!r}")
        condition = parse_condition(r.condition, f"{where}: condition")
        used = dict.fromkeys(metrics_of(condition))
        used.update(dict.fromkeys(check_template(r.message, f"{where}: message")))
        used.update(dict.fromkeys(check_template(r.pass_message, f"{where}: pass_message")))
        if area_crs is None and NATIONAL_AREA_METRICS & set(used):
            raise RulePackError(f"{where}: uses a national area metric but the pack states no area_crs")
        rules.append(
            Rule(
                id=r.id,
                pack=pid,
                name=r.name,
                description=r.description,
                category=r.category,
                severity=r.severity,
                condition=condition,
                message=r.message,
                pass_message=r.pass_message,
                references=tuple(r.references),
                heuristic=r.heuristic,
                basis=r.basis,
                annex_iii=tuple(r.annex_iii),
                metrics=tuple(used),
                min_coverage=min_coverage,
            )
        )
    return RulePack(
        id=pid,
        name=raw.pack.name,
        version=raw.pack.version,
        description=raw.pack.description,
        rules=tuple(rules),
        min_coverage=min_coverage,
        area_crs=area_crs,
        area_crs_basis=raw.pack.area_crs_basis,
    )


def national_pack(country: str | None) -> RulePack | None:
    """The national pack of an already validated country code, or None when it has none."""
    if country is None or country == EU_PACK or country not in PACK_FILES:
        return None
    return load_pack(country)


@cache
def load_pack(pack_id: str) -> RulePack:
    """The registered pack `pack_id`, parsed once per process. KeyError when no such pack is registered."""
    filename = PACK_FILES[pack_id]
    text = resources.files("aethera.legal").joinpath("packs", filename).read_text(encoding="utf-8")
    return parse_pack(text, expected_id=pack_id)


def load_all_packs() -> dict[str, RulePack]:
    """Every registered pack; also checks rule ids are unique across packs (they share one result)."""
    packs = {pid: load_pack(pid) for pid in PACK_FILES}
    owner: dict[str, str] = {}
    for pack in packs.values():
        for rule in pack.rules:
            if rule.id in owner:
                raise RulePackError(f"rule id {rule.id} appears in packs {owner[rule.id]} and {pack.id}")
            owner[rule.id] = pack.id
    return packs


def packs_for(country: str | None) -> list[RulePack]:
    """The packs that apply to an already validated country code: EU first, then the national pack."""
    packs = [load_pack(EU_PACK)]
    if country is not None and country != EU_PACK and country in PACK_FILES:
        packs.append(load_pack(country))
    return packs
