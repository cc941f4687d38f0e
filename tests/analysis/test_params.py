"""RunParams.from_request: aliases, defaults from settings, validation naming the field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from aethera.analysis.params import RunParams
from aethera.errors import InvalidInput, UnknownCountry
from aethera.settings import load_settings


def test_aliases_and_defaults() -> None:
    settings = load_settings({"AETHERA_SOLAR_MW_PER_HA": "0.8", "AETHERA_DEFAULT_BUFFER_KM": "3"})
    p = RunParams.from_request("Solar_Farm", "deu", None, settings)
    assert (p.project_type, p.country, p.capacity_mw, p.buffer_km) == ("solar", "DEU", None, 3.0)
    assert p.resolved_capacity(100.0) == (80.0, "density: 0.8 MW/ha x AOI area 100.00 ha")
    w = RunParams.from_request("wind_farm", None, {"capacity_mw": 12, "buffer_km": 0}, None)
    assert (w.project_type, w.country, w.buffer_km) == ("wind", None, 0.0)
    assert w.resolved_capacity(100.0) == (12.0, "config")
    assert RunParams("wind", None, None, 5.0).resolved_capacity(1000.0)[0] == pytest.approx(30.0)  # 0.03 MW/ha


def test_positional_contract_and_json_round_trip() -> None:
    p = RunParams.from_request("solar", "ESP", {"capacity_mw": 5, "emission_factors": {
        "grid_tco2e_per_mwh": 0.2, "carbon_loss_tco2e_per_ha": {"312": 100}}, "colour": "red"}, None)
    assert p.ignored_config_keys == ("colour",)
    assert p.factor_overrides == {"grid_tco2e_per_mwh": 0.2, "carbon_loss_tco2e_per_ha": {312: 100.0}}
    again = msgspec.json.decode(msgspec.json.encode(p), type=RunParams)  # how the job queue carries it
    assert again.capacity_mw == 5 and again.factor_overrides["grid_tco2e_per_mwh"] == 0.2
    assert RunParams("solar", "DEU", 10.0, 5.0).capacity_mw == 10.0


@pytest.mark.parametrize("ptype,country,config,error,field", [
    ("nuclear", None, None, InvalidInput, "project_type"),
    ("", None, None, InvalidInput, "project_type"),
    ("solar", "XX", None, UnknownCountry, None),
    ("solar", "QQQ", None, UnknownCountry, None),
    ("solar", None, {"capacity_mw": 0}, InvalidInput, "config.capacity_mw"),
    ("solar", None, {"capacity_mw": -5}, InvalidInput, "config.capacity_mw"),
    ("solar", None, {"capacity_mw": "50"}, InvalidInput, "config.capacity_mw"),
    ("solar", None, {"capacity_mw": True}, InvalidInput, "config.capacity_mw"),
    ("solar", None, {"capacity_mw": float("inf")}, InvalidInput, "config.capacity_mw"),
    ("solar", None, {"buffer_km": 51}, InvalidInput, "config.buffer_km"),
    ("solar", None, {"buffer_km": -1}, InvalidInput, "config.buffer_km"),
    ("solar", None, {"lifetime_years": 0.5}, InvalidInput, "config.lifetime_years"),
    ("solar", None, [1, 2], InvalidInput, "config"),
    ("solar", None, {"emission_factors": {"grid": 1}}, InvalidInput, "config.emission_factors.grid"),
    ("solar", None, {"emission_factors": {"capacity_factor": 1.5}}, InvalidInput,
     "config.emission_factors.capacity_factor"),
    ("solar", None, {"emission_factors": {"carbon_loss_tco2e_per_ha": {"abc": 1}}}, InvalidInput,
     "config.emission_factors.carbon_loss_tco2e_per_ha"),
])
def test_invalid(ptype: str, country: str | None, config: Any, error: type, field: str | None) -> None:
    with pytest.raises(error) as info:
        RunParams.from_request(ptype, country, config, None)
    if field:
        assert info.value.extra.get("field") == field
