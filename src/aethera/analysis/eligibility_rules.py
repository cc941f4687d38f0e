"""Land-eligibility rule sets: data files per technology, national overlays, per-run overrides.

A rule set (`analysis/data/eligibility/{solar,wind}.toml`) lists the exclusion rules of one technology:
`land_cover` (CORINE codes to exclude, or the only codes to include), `protected_areas` (all sites,
Natura 2000 only, or some site types, with a buffer), `settlements`, `water` (each with a buffer),
`slope` (above a threshold), `elevation` (outside a range) and `min_area` (the smallest eligible patch
that counts as a site). Every rule names its source and says whether its threshold is a screening
default of this service. A national overlay (`esp.toml`) replaces named parameters for one country.

Files are found through fixed registries (`RULE_SET_FILES`, `OVERLAY_FILES`) and checked when they are
loaded: an unknown key, a code outside the CORINE nomenclature, a negative buffer or an empty source is
an error then, never half-way through a run. A run's `config.eligibility` (`models.EligibilityOverrides`)
replaces thresholds and buffers or switches rules off; `effective_rules` applies it and checks the result
with the same checks, so a bad override is refused when the run is requested.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any, Literal, NoReturn

import msgspec

from aethera.data import corine
from aethera.errors import ConfigError, InvalidInput

RULE_KINDS: tuple[str, ...] = (
    "land_cover",
    "protected_areas",
    "settlements",
    "water",
    "slope",
    "elevation",
    "min_area",
)
# the catalog layer each rule reads (min_area reads none: it acts on what the other rules leave)
RULE_LAYERS: dict[str, str | None] = {
    "land_cover": "land_cover",
    "protected_areas": "protected_areas",
    "settlements": "settlements",
    "water": "water",
    "slope": "elevation",
    "elevation": "elevation",
    "min_area": None,
}
RULE_SET_FILES: dict[str, str] = {"solar": "solar.toml", "wind": "wind.toml"}
OVERLAY_FILES: dict[str, str] = {"ESP": "esp.toml"}
MAX_BUFFER_M = 50_000.0

Scope = Literal["all", "natura2000", "types"]


class Rule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One rule as written in a file (every parameter optional; which ones apply depends on the kind)."""

    enabled: bool = True
    source: str = ""
    screening_default: bool = True
    exclude: list[int] | None = None  # land_cover: CORINE level-3 codes excluded
    include: list[int] | None = None  # land_cover: the only codes eligible (every other known class excluded)
    scope: Scope | None = None  # protected_areas
    types: list[str] | None = None  # protected_areas with scope "types": the site types excluded
    buffer_m: float | None = None  # protected_areas, settlements, water
    max_deg: float | None = None  # slope
    min_m: float | None = None  # elevation: land below is excluded
    max_m: float | None = None  # elevation: land above is excluded
    min_area_ha: float | None = None  # min_area


class _RuleSetInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    technology: Literal["solar", "wind"]
    version: str
    name: str
    description: str


class _RawRuleSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rule_set: _RuleSetInfo
    rules: dict[str, Rule]


class _OverlayInfo(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    country: str
    version: str
    name: str
    description: str


class _RawOverlay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    overlay: _OverlayInfo
    solar: dict[str, Rule] = {}
    wind: dict[str, Rule] = {}


class RuleSet(msgspec.Struct, kw_only=True, frozen=True):
    """The rules a run applies: a technology's file, with its country's overlay and the run's overrides."""

    id: str
    technology: str
    version: str
    name: str
    rules: dict[str, Rule]  # every kind in RULE_KINDS, in that order
    overlays: tuple[str, ...] = ()  # overlay ids applied, e.g. ("ESP",)
    overridden: dict[str, tuple[str, ...]] = {}  # rule kind -> parameters the run's config replaced


# Which parameters each kind takes (anything else in a file or an override is refused).
RULE_PARAMS: dict[str, frozenset[str]] = {
    "land_cover": frozenset({"exclude", "include"}),
    "protected_areas": frozenset({"scope", "types", "buffer_m"}),
    "settlements": frozenset({"buffer_m"}),
    "water": frozenset({"buffer_m"}),
    "slope": frozenset({"max_deg"}),
    "elevation": frozenset({"min_m", "max_m"}),
    "min_area": frozenset({"min_area_ha"}),
}
_COMMON = frozenset({"enabled", "source", "screening_default"})


def check_rule(kind: str, rule: Rule, where: str, error: type[ConfigError | InvalidInput] = ConfigError) -> None:
    """Refuse a rule whose parameters do not fit its kind; `error` is raised with a message saying why
    (an `InvalidInput` names `where` as its field: the override a client sent)."""

    def fail(message: str) -> NoReturn:
        if error is InvalidInput:
            raise InvalidInput(message, field=where)
        raise error(message)

    if kind not in RULE_PARAMS:
        fail(f"{where}: unknown rule {kind!r}; rules are {', '.join(RULE_KINDS)}")
    given = {f for f in rule.__struct_fields__ if getattr(rule, f) is not None} - _COMMON
    extra = given - RULE_PARAMS[kind]
    if extra:
        fail(f"{where}: rule {kind} takes {', '.join(sorted(RULE_PARAMS[kind]))}, not {', '.join(sorted(extra))}")
    if not rule.source.strip():
        fail(f"{where}: rule {kind} needs a source")
    if not rule.enabled:
        return
    if kind == "land_cover":
        if (rule.exclude is None) == (rule.include is None):
            fail(f"{where}: rule land_cover needs exactly one of exclude and include")
        codes = rule.exclude if rule.exclude is not None else rule.include
        unknown = [c for c in codes or [] if corine.lookup(c) is None]
        if unknown:
            fail(f"{where}: {', '.join(map(str, unknown))} not CORINE level-3 codes")
    elif kind == "protected_areas":
        if rule.scope is None or rule.buffer_m is None:
            fail(f"{where}: rule protected_areas needs scope and buffer_m")
        if rule.scope == "types" and not rule.types:
            fail(f"{where}: rule protected_areas with scope 'types' needs a list of types")
    elif kind in ("settlements", "water") and rule.buffer_m is None:
        fail(f"{where}: rule {kind} needs buffer_m")
    elif kind == "slope" and (rule.max_deg is None or not 0 < rule.max_deg < 90):
        fail(f"{where}: rule slope needs max_deg between 0 and 90 degrees")
    elif kind == "elevation":
        if rule.min_m is None and rule.max_m is None:
            fail(f"{where}: rule elevation needs min_m, max_m or both")
        if rule.min_m is not None and rule.max_m is not None and rule.min_m >= rule.max_m:
            fail(f"{where}: rule elevation needs min_m below max_m")
    elif kind == "min_area" and (rule.min_area_ha is None or rule.min_area_ha < 0):
        fail(f"{where}: rule min_area needs min_area_ha of at least 0")
    if rule.buffer_m is not None and not 0 <= rule.buffer_m <= MAX_BUFFER_M:
        fail(f"{where}: rule {kind} buffer_m must lie from 0 to {MAX_BUFFER_M:g} m")


def parse_rule_set(text: str, expected_id: str | None = None) -> RuleSet:
    """A rule set file's text, checked; `ConfigError` says what is wrong and where."""
    where = f"eligibility rule set {expected_id or ''}".strip()
    try:
        raw = msgspec.convert(tomllib.loads(text), _RawRuleSet)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{where} is malformed: {exc}") from None
    if expected_id is not None and raw.rule_set.id != expected_id:
        raise ConfigError(f"{where} declares id {raw.rule_set.id!r}")
    missing = [k for k in RULE_KINDS if k not in raw.rules]
    if missing:  # every rule is written out, switched off if need be: nothing is left to a code default
        raise ConfigError(f"{where}: rules {', '.join(missing)} missing (write them with enabled = false)")
    for kind, rule in raw.rules.items():
        check_rule(kind, rule, where)
    info = raw.rule_set
    return RuleSet(
        id=info.id,
        technology=info.technology,
        version=info.version,
        name=info.name,
        rules={k: raw.rules[k] for k in RULE_KINDS},
    )


def parse_overlay(text: str, expected_id: str | None = None) -> _RawOverlay:
    where = f"eligibility overlay {expected_id or ''}".strip()
    try:
        raw = msgspec.convert(tomllib.loads(text), _RawOverlay)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{where} is malformed: {exc}") from None
    if expected_id is not None and raw.overlay.id != expected_id:
        raise ConfigError(f"{where} declares id {raw.overlay.id!r}")
    for tech in ("solar", "wind"):
        for kind, rule in getattr(raw, tech).items():
            if kind not in RULE_PARAMS:
                raise ConfigError(f"{where}: unknown rule {kind!r}; rules are {', '.join(RULE_KINDS)}")
            if not rule.source.strip():
                raise ConfigError(f"{where}: rule {tech}.{kind} needs a source")
    return raw


def _read(name: str) -> str:
    return resources.files("aethera.analysis").joinpath("data", "eligibility", name).read_text(encoding="utf-8")


@cache
def load_rule_set(technology: str) -> RuleSet:
    """The rule set of a technology, parsed once per process (KeyError for a technology without one)."""
    return parse_rule_set(_read(RULE_SET_FILES[technology]), expected_id=technology)


@cache
def load_overlay(overlay_id: str) -> _RawOverlay:
    return parse_overlay(_read(OVERLAY_FILES[overlay_id]), expected_id=overlay_id)


def load_all() -> None:
    """Load every registered rule set and overlay, and apply each overlay to each rule set (the checks)."""
    for tech in RULE_SET_FILES:
        for country in (None, *OVERLAY_FILES):
            effective_rules(tech, country, None)


def _replace(base: Rule, patch: dict[str, Any]) -> Rule:
    merged = {**msgspec.to_builtins(base), **patch}
    # the two land-cover lists exclude each other: a patch naming one replaces the file's other (a patch
    # naming both is left so, and refused by the checks)
    if "include" in patch and "exclude" not in patch:
        merged.pop("exclude", None)
    if "exclude" in patch and "include" not in patch:
        merged.pop("include", None)
    return msgspec.convert(merged, Rule)


def effective_rules(technology: str, country: str | None, overrides: dict[str, Any] | None) -> RuleSet:
    """The rule set a run applies: the technology's file, its country's overlay, then the run's overrides.

    `overrides` is `config.eligibility` as plain data (`{"settlements": {"buffer_m": 800}, "slope":
    {"enabled": false}}`). A combination the checks refuse is `InvalidInput` naming the rule.
    """
    base = load_rule_set(technology)
    rules = dict(base.rules)
    overlays: list[str] = []
    if country in OVERLAY_FILES:
        overlay = load_overlay(country)
        for kind, rule in getattr(overlay, technology).items():
            patch = msgspec.to_builtins(rule)  # only the keys the overlay set (defaults are omitted)
            rules[kind] = _replace(rules[kind], patch)
            check_rule(kind, rules[kind], f"eligibility overlay {country} on {technology}")
        overlays.append(country)
    overridden: dict[str, tuple[str, ...]] = {}
    for kind, patch in (overrides or {}).items():
        if patch is None:
            continue
        if kind not in rules:
            raise InvalidInput(
                f"config.eligibility.{kind} is not a rule; rules are {', '.join(RULE_KINDS)}",
                field=f"config.eligibility.{kind}",
            )
        patch = dict(patch)
        if set(patch) - {"enabled"}:  # a threshold of the run's own choosing, not this service's default
            patch["source"] = "run configuration (config.eligibility)"
            patch["screening_default"] = False
        rules[kind] = _replace(rules[kind], patch)
        check_rule(kind, rules[kind], f"config.eligibility.{kind}", InvalidInput)
        overridden[kind] = tuple(sorted(k for k in patch if k not in ("source", "screening_default")))
    return RuleSet(
        id=base.id,
        technology=base.technology,
        version=base.version,
        name=base.name,
        rules={k: rules[k] for k in RULE_KINDS},
        overlays=tuple(overlays),
        overridden=overridden,
    )
