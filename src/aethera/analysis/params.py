"""Run parameters: what a run screens for, validated once where the request arrives.

`RunParams.from_request(project_type, country, config, settings)` is what the API (and the CLI) call;
it raises `InvalidInput` (or `UnknownCountry`) with a message naming the offending field. The capacity
may stay unset: the pipeline then derives it from the AOI's area and the documented density of the
technology (`AETHERA_SOLAR_MW_PER_HA`, `AETHERA_WIND_MW_PER_HA`), and says so in the results.

`config` is a `models.RunConfig`: its keys and ranges are declared there once, and msgspec checks them
(the API while decoding the request, `from_request` for a plain mapping from Python). An unknown key is
refused, not ignored. `config_error` turns msgspec's error into a message naming the field and saying
what it accepts, read from the same declaration:
- `capacity_mw` (> 0), `buffer_km` (0 to 50), `lifetime_years` (1 to 100)
- `emission_factors`: per-run overrides of the emission factor file, e.g.
  `{"grid_tco2e_per_mwh": 0.35, "capacity_factor": 0.12, "construction_tco2e_per_mw": 900,
  "operation_tco2e_per_mw_year": 2, "footprint_share": 0.6,
  "carbon_loss_tco2e_per_ha": {"312": 300}, "first_operating_year": 2027}` (the first year of the
  grid trajectory the avoided emissions are summed on; default the year after the run)
- `eligibility`: per-run changes to the land-eligibility rule set (`analysis/eligibility_rules.py`), e.g.
  `{"settlements": {"buffer_m": 800}, "slope": {"max_deg": 15}, "water": {"enabled": false}}`
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from msgspec import inspect as mi

from aethera import settings as config_module
from aethera.data.countries import normalize_country
from aethera.errors import InvalidInput
from aethera.models import RunConfig

ProjectType = Literal["solar", "wind"]

_ALIASES = {"solar": "solar", "solar_farm": "solar", "wind": "wind", "wind_farm": "wind"}


def default_mw_per_ha(project_type: ProjectType) -> float:
    """The technology's capacity density for callers without settings: the settings' default."""
    defaults = config_module.DEFAULTS
    return defaults.solar_mw_per_ha if project_type == "solar" else defaults.wind_mw_per_ha


class RunParams(msgspec.Struct, frozen=True):
    """The parameters of one run. The first four fields are the shared contract."""

    project_type: ProjectType
    country: str | None
    capacity_mw: float | None  # None: derived from the AOI area and `mw_per_ha`
    buffer_km: float
    mw_per_ha: float | None = None  # None: default_mw_per_ha() of the technology
    lifetime_years: float | None = None  # None: the technology's default from the emission factor file
    factor_overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    # `config.eligibility` as plain data: per-run changes to the land-eligibility rule set
    eligibility: dict[str, Any] = msgspec.field(default_factory=dict)

    @classmethod
    def from_request(
        cls,
        project_type: str,
        country: str | None,
        config: RunConfig | Mapping[str, Any] | None,
        settings: Any | None = None,
    ) -> RunParams:
        """Validate a request's parameters; `InvalidInput` naming the field when one is wrong."""
        if not isinstance(project_type, str) or project_type.strip().lower() not in _ALIASES:
            shown = str(project_type)[:40]
            raise InvalidInput(
                f"project_type {shown!r} is not supported; use solar or wind (solar_farm, wind_farm accepted)",
                field="project_type",
            )
        ptype: ProjectType = _ALIASES[project_type.strip().lower()]  # type: ignore[assignment]
        code = normalize_country(country)
        run_config = _run_config(config)
        buffer_default = float((settings or config_module.DEFAULTS).default_buffer_km)
        density = None
        if settings is not None:
            density = float(settings.solar_mw_per_ha if ptype == "solar" else settings.wind_mw_per_ha)
        overrides: dict[str, Any] = {}
        if run_config.emission_factors is not None:
            overrides = msgspec.to_builtins(run_config.emission_factors)  # the keys the client set
            if "carbon_loss_tco2e_per_ha" in overrides:
                overrides["carbon_loss_tco2e_per_ha"] = {
                    int(code): value for code, value in overrides["carbon_loss_tco2e_per_ha"].items()
                }
        eligibility: dict[str, Any] = {}
        if run_config.eligibility is not None:
            from aethera.analysis.eligibility_rules import effective_rules

            eligibility = msgspec.to_builtins(run_config.eligibility)  # the rules and keys the client set
            effective_rules(ptype, code, eligibility)  # a combination the rule checks refuse is refused now
        return cls(
            project_type=ptype,
            country=code,
            capacity_mw=run_config.capacity_mw,
            buffer_km=buffer_default if run_config.buffer_km is None else run_config.buffer_km,
            mw_per_ha=density,
            lifetime_years=run_config.lifetime_years,
            factor_overrides=overrides,
            eligibility=eligibility,
        )

    @property
    def density_mw_per_ha(self) -> float:
        return self.mw_per_ha if self.mw_per_ha is not None else default_mw_per_ha(self.project_type)

    def resolved_capacity(self, aoi_area_ha: float) -> tuple[float, str]:
        """The capacity in MW and where it came from (the request, or the density x the AOI area)."""
        if self.capacity_mw is not None:
            return float(self.capacity_mw), "config"
        density = self.density_mw_per_ha
        return round(aoi_area_ha * density, 3), f"density: {density:g} MW/ha x AOI area {aoi_area_ha:.2f} ha"


def _run_config(config: RunConfig | Mapping[str, Any] | None) -> RunConfig:
    """`config` as a RunConfig; a mapping (a Python caller's) is checked exactly as the API checks JSON."""
    if config is None:
        return RunConfig()
    if isinstance(config, RunConfig):
        return config
    if not isinstance(config, Mapping):
        raise InvalidInput("config must be an object", field="config")
    try:
        return msgspec.convert(dict(config), RunConfig)
    except msgspec.ValidationError as exc:
        raise config_error(exc, prefix="config") or InvalidInput("config is not valid", field="config") from None


# --- messages: what a config field accepts, read from RunConfig's own declaration ------------------

_AT = re.compile(r" - at (`key` in )?`\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")
_CONFIG_PATH = re.compile(r"^config(?:$|[.\[])")
_MAX_NAME_SHOWN = 64


def config_error(exc: msgspec.ValidationError, prefix: str = "") -> InvalidInput | None:
    """msgspec's error about a config field as an `InvalidInput` naming the field and what it accepts,
    e.g. "config.buffer_km must be a number from 0 to 50"; None when the error is not
    about config. `prefix` is prepended to the error's path (`"config"` when RunConfig was the root)."""
    message = str(exc)
    at = _AT.search(message)
    if at is None and not prefix:
        return None
    path = ".".join(p for p in (prefix, at.group(2) if at else "") if p).replace(".[", "[")
    if not _CONFIG_PATH.match(path):
        return None
    reason = message[: at.start()] if at else message  # msgspec names no path at the root
    is_key = bool(at and at.group(1))
    parts = re.findall(r"[^.\[\]]+|\[[^\]]*\]", path)[1:]  # below "config"
    field = path.removesuffix("[...]")
    unknown = _UNKNOWN.match(reason)
    if unknown:
        name = unknown.group(1)
        # the client chose the name: a long one is cut, so the answer (and a log line) stays small
        field = f"{field}.{name if len(name) <= _MAX_NAME_SHOWN else name[:_MAX_NAME_SHOWN] + '…'}"
        fields = [f.name for f in _struct_at(parts).fields]
        return InvalidInput(f"{field} is not accepted here; use {', '.join(fields)}", field=field)
    if is_key:  # a key of a mapping
        expected = _expected(_key_type(_type_at(parts)))
        return InvalidInput(f"every key of {field} must be {expected}", field=field)
    if parts and parts[-1].startswith("["):
        expected = _expected(_type_at(parts))
        return InvalidInput(f"every value of {field} must be {expected}", field=field)
    return InvalidInput(f"{field} must be {_expected(_type_at(parts))}", field=field)


def _plain(t: mi.Type) -> mi.Type:
    """The type without its metadata and without the null/unset a field may also take."""
    while True:
        if isinstance(t, mi.Metadata):
            t = t.type
        elif isinstance(t, mi.UnionType):
            real = [u for u in t.types if not isinstance(u, mi.NoneType)]  # UNSET is not listed
            if len(real) != 1:
                return t
            t = real[0]
        else:
            return t


def _type_at(parts: list[str]) -> mi.Type:
    """The declared type at a path below RunConfig (`[...]` or `[0]` steps into a mapping's values)."""
    t: mi.Type = mi.type_info(RunConfig)
    for part in parts:
        plain = _plain(t)
        if isinstance(plain, mi.StructType):
            t = next(f.type for f in plain.fields if f.name == part)
        elif isinstance(plain, mi.DictType):
            t = plain.value_type
    return t


def _struct_at(parts: list[str]) -> mi.StructType:
    t = _plain(_type_at(parts))
    assert isinstance(t, mi.StructType)
    return t


def _key_type(t: mi.Type) -> mi.Type:
    plain = _plain(t)
    return plain.key_type if isinstance(plain, mi.DictType) else plain


def _description(t: mi.Type) -> str | None:
    """The `description` a declared type carries in its metadata, if any."""
    while True:
        if isinstance(t, mi.Metadata):
            if t.extra_json_schema and t.extra_json_schema.get("description"):
                return str(t.extra_json_schema["description"])
            t = t.type
        elif isinstance(t, mi.UnionType):
            real = [u for u in t.types if not isinstance(u, mi.NoneType)]
            if len(real) != 1:
                return None
            t = real[0]
        else:
            return None


def _expected(t: mi.Type) -> str:
    """What a declared type accepts, in words: "a number greater than 0 and at most 100000"."""
    described = _description(t)
    plain = _plain(t)
    if isinstance(plain, (mi.FloatType, mi.IntType)):
        low = f"greater than {plain.gt:g}" if plain.gt is not None else None
        high = f"less than {plain.lt:g}" if plain.lt is not None else None
        if plain.le is not None and plain.le < sys.float_info.max:  # the largest float: any number
            high = f"at most {plain.le:g}"
        if plain.ge is not None:
            if high and high.startswith("at most"):
                return f"a number from {plain.ge:g} to {plain.le:g}"
            low = f"at least {plain.ge:g}"
        return " ".join(["a number", " and ".join(b for b in (low, high) if b)]).strip()
    if isinstance(plain, mi.StrType):
        return described or "a text"
    if isinstance(plain, mi.StructType):
        return f"an object with the keys {', '.join(f.name for f in plain.fields)} (each optional)"
    if isinstance(plain, mi.DictType):
        most = f", at most {plain.max_length} entries" if plain.max_length is not None else ""
        keys = _description(plain.key_type)
        return f"an object mapping keys{f' ({keys})' if keys else ''} to {_expected(plain.value_type)}{most}"
    return described or "of another type"
