"""Run parameters: what a run screens for, validated once where the request arrives.

`RunParams.from_request(project_type, country, config, settings)` is what the API (and the CLI) call;
it raises `InvalidInput` (or `UnknownCountry`) with a message naming the offending field. The capacity
may stay unset: the pipeline then derives it from the AOI's area and the documented density of the
technology (`AETHERA_SOLAR_MW_PER_HA`, `AETHERA_WIND_MW_PER_HA`), and says so in the results.

`config` keys understood (anything else is ignored and reported as a warning):
- `capacity_mw` (> 0), `buffer_km` (0 to 50), `lifetime_years` (1 to 100)
- `emission_factors`: per-run overrides of the emission factor file, e.g.
  `{"grid_tco2e_per_mwh": 0.35, "capacity_factor": 0.12, "construction_tco2e_per_mw": 900,
  "operation_tco2e_per_mw_year": 2, "footprint_share": 0.6,
  "carbon_loss_tco2e_per_ha": {"312": 300}, "first_operating_year": 2027}` (the first year of the
  grid trajectory the avoided emissions are summed on; default the year after the run)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from aethera.data.countries import normalize_country
from aethera.errors import InvalidInput

ProjectType = Literal["solar", "wind"]

_ALIASES = {"solar": "solar", "solar_farm": "solar", "wind": "wind", "wind_farm": "wind"}
# Built-in densities, the same numbers as the settings' defaults (for callers without settings).
DEFAULT_MW_PER_HA = {"solar": 0.5, "wind": 0.03}
MAX_BUFFER_KM = 50.0
MAX_CAPACITY_MW = 100_000.0

KNOWN_CONFIG_KEYS = ("capacity_mw", "buffer_km", "lifetime_years", "emission_factors")
FACTOR_OVERRIDE_KEYS = (
    "construction_tco2e_per_mw",
    "operation_tco2e_per_mw_year",
    "capacity_factor",
    "grid_tco2e_per_mwh",
    "footprint_share",
    "carbon_loss_tco2e_per_ha",
    "first_operating_year",
)
FIRST_YEAR_RANGE = (2000, 2100)


class RunParams(msgspec.Struct, frozen=True):
    """The parameters of one run. The first four fields are the shared contract."""

    project_type: ProjectType
    country: str | None
    capacity_mw: float | None  # None: derived from the AOI area and `mw_per_ha`
    buffer_km: float
    mw_per_ha: float | None = None  # None: DEFAULT_MW_PER_HA of the technology
    lifetime_years: float | None = None  # None: the technology's default from the emission factor file
    factor_overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    ignored_config_keys: tuple[str, ...] = ()

    @classmethod
    def from_request(
        cls,
        project_type: str,
        country: str | None,
        config: Mapping[str, Any] | None,
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
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise InvalidInput("config must be an object", field="config")
        capacity = _number(config, "capacity_mw", low=0.0, high=MAX_CAPACITY_MW, low_open=True)
        buffer_default = float(getattr(settings, "default_buffer_km", 5.0)) if settings is not None else 5.0
        buffer_km = _number(config, "buffer_km", low=0.0, high=MAX_BUFFER_KM)
        lifetime = _number(config, "lifetime_years", low=1.0, high=100.0)
        density = None
        if settings is not None:
            density = float(settings.solar_mw_per_ha if ptype == "solar" else settings.wind_mw_per_ha)
        overrides = _factor_overrides(config.get("emission_factors"))
        ignored = tuple(sorted(str(k) for k in config if k not in KNOWN_CONFIG_KEYS))
        return cls(
            project_type=ptype,
            country=code,
            capacity_mw=capacity,
            buffer_km=buffer_default if buffer_km is None else buffer_km,
            mw_per_ha=density,
            lifetime_years=lifetime,
            factor_overrides=overrides,
            ignored_config_keys=ignored,
        )

    @property
    def density_mw_per_ha(self) -> float:
        return self.mw_per_ha if self.mw_per_ha is not None else DEFAULT_MW_PER_HA[self.project_type]

    def resolved_capacity(self, aoi_area_ha: float) -> tuple[float, str]:
        """The capacity in MW and where it came from (the request, or the density x the AOI area)."""
        if self.capacity_mw is not None:
            return float(self.capacity_mw), "config"
        density = self.density_mw_per_ha
        return round(aoi_area_ha * density, 3), f"density: {density:g} MW/ha x AOI area {aoi_area_ha:.2f} ha"


def _number(config: Mapping[str, Any], key: str, *, low: float, high: float, low_open: bool = False) -> float | None:
    if key not in config or config[key] is None:
        return None
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"config.{key} must be a number", field=f"config.{key}")
    if value < low or (low_open and value == low) or value > high:
        bound = f"greater than {low:g}" if low_open else f"at least {low:g}"
        raise InvalidInput(f"config.{key} must be {bound} and at most {high:g}", field=f"config.{key}")
    return float(value)


def _factor_overrides(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("config.emission_factors must be an object", field="config.emission_factors")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"config.emission_factors.{key}"
        if key not in FACTOR_OVERRIDE_KEYS:
            raise InvalidInput(
                f"{where} is not an overridable factor (use {', '.join(FACTOR_OVERRIDE_KEYS)})", field=where
            )
        if key == "carbon_loss_tco2e_per_ha":
            if not isinstance(value, Mapping):
                raise InvalidInput(f"{where} must map CORINE codes to tCO2e/ha", field=where)
            table: dict[int, float] = {}
            for code, v in value.items():
                try:
                    c = int(str(code))
                except ValueError:
                    raise InvalidInput(f"{where}: {str(code)[:10]!r} is not a CORINE code", field=where) from None
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise InvalidInput(f"{where}.{c} must be a number >= 0", field=where)
                table[c] = float(v)
            out[key] = table
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidInput(f"{where} must be a number >= 0", field=where)
        if key == "first_operating_year":
            low, high = FIRST_YEAR_RANGE
            if not float(value).is_integer() or not low <= value <= high:
                raise InvalidInput(f"{where} must be a whole year from {low} to {high}", field=where)
        if key in ("capacity_factor", "footprint_share") and value > 1:
            raise InvalidInput(f"{where} must lie between 0 and 1", field=where)
        out[key] = float(value)
    return out
