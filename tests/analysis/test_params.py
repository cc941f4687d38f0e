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
    p = RunParams.from_request(
        "solar",
        "ESP",
        {"capacity_mw": 5, "emission_factors": {"grid_tco2e_per_mwh": 0.2, "carbon_loss_tco2e_per_ha": {"312": 100}}},
        None,
    )
    assert p.factor_overrides == {"grid_tco2e_per_mwh": 0.2, "carbon_loss_tco2e_per_ha": {312: 100.0}}
    again = msgspec.json.decode(msgspec.json.encode(p), type=RunParams)  # how the job queue carries it
    assert again.capacity_mw == 5 and again.factor_overrides["grid_tco2e_per_mwh"] == 0.2
    assert RunParams("solar", "DEU", 10.0, 5.0).capacity_mw == 10.0


@pytest.mark.parametrize(
    "ptype,country,config,error,field",
    [
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
        (
            "solar",
            None,
            {"emission_factors": {"capacity_factor": 1.5}},
            InvalidInput,
            "config.emission_factors.capacity_factor",
        ),
        (
            "solar",
            None,
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {"abc": 1}}},
            InvalidInput,
            "config.emission_factors.carbon_loss_tco2e_per_ha",
        ),
        ("solar", None, {"colour": "red"}, InvalidInput, "config.colour"),
        (
            "solar",
            None,
            {"emission_factors": {"grid_tco2e_per_mwh": None}},
            InvalidInput,
            "config.emission_factors.grid_tco2e_per_mwh",
        ),
        (
            "solar",
            None,
            {"emission_factors": {"grid_tco2e_per_mwh": float("nan")}},
            InvalidInput,
            "config.emission_factors.grid_tco2e_per_mwh",
        ),
        (
            "solar",
            None,
            {"emission_factors": {"construction_tco2e_per_mw": float("inf")}},
            InvalidInput,
            "config.emission_factors.construction_tco2e_per_mw",
        ),
        (
            "solar",
            None,
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {"312": -1}}},
            InvalidInput,
            "config.emission_factors.carbon_loss_tco2e_per_ha",
        ),
        (
            "solar",
            None,
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {str(c): 1 for c in range(100, 200)}}},
            InvalidInput,
            "config.emission_factors.carbon_loss_tco2e_per_ha",
        ),
        ("solar", None, {"emission_factors": [1]}, InvalidInput, "config.emission_factors"),
    ],
)
def test_invalid(ptype: str, country: str | None, config: Any, error: type, field: str | None) -> None:
    with pytest.raises(error) as info:
        RunParams.from_request(ptype, country, config, None)
    if field:
        assert info.value.extra.get("field") == field


@pytest.mark.parametrize(
    "config,message",
    [
        ({"capacity_mw": 0}, "config.capacity_mw must be a number greater than 0 and at most 100000"),
        ({"capacity_mw": "50"}, "config.capacity_mw must be a number greater than 0 and at most 100000"),
        ({"buffer_km": 51}, "config.buffer_km must be a number from 0 to 50"),
        ({"lifetime_years": 0.5}, "config.lifetime_years must be a number from 1 to 100"),
        (
            {"colour": "red"},
            "config.colour is not accepted here; use capacity_mw, buffer_km, lifetime_years, "
            "emission_factors, eligibility, reuse",
        ),
        (
            {"emission_factors": {"grid": 1}},
            "config.emission_factors.grid is not accepted here; use "
            "construction_tco2e_per_mw, operation_tco2e_per_mw_year, capacity_factor, "
            "grid_tco2e_per_mwh, footprint_share, carbon_loss_tco2e_per_ha, first_operating_year",
        ),
        (
            {"emission_factors": {"capacity_factor": 1.5}},
            "config.emission_factors.capacity_factor must be a number from 0 to 1",
        ),
        (
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {"abc": 1}}},
            'every key of config.emission_factors.carbon_loss_tco2e_per_ha must be a CORINE code such as "312"',
        ),
        (
            {"emission_factors": {"carbon_loss_tco2e_per_ha": {"312": -1}}},
            "every value of config.emission_factors.carbon_loss_tco2e_per_ha must be a number at least 0",
        ),
    ],
)
def test_messages_say_what_the_field_accepts(config: dict[str, Any], message: str) -> None:
    """The messages are worded from RunConfig's declaration: the ranges are written once, there."""
    with pytest.raises(InvalidInput) as info:
        RunParams.from_request("solar", None, config, None)
    assert info.value.detail == message


def test_a_typed_config_and_its_mapping_give_the_same_parameters() -> None:
    from aethera.models import EmissionFactorOverrides, RunConfig

    typed = RunConfig(
        capacity_mw=12,
        buffer_km=2.5,
        emission_factors=EmissionFactorOverrides(footprint_share=0.4, carbon_loss_tco2e_per_ha={"211": 5}),
    )
    as_mapping = {
        "capacity_mw": 12,
        "buffer_km": 2.5,
        "emission_factors": {"footprint_share": 0.4, "carbon_loss_tco2e_per_ha": {"211": 5}},
    }
    assert RunParams.from_request("solar", None, typed, None) == RunParams.from_request("solar", None, as_mapping, None)
    # only the factors the client set are overrides; the rest keep the factor file's values
    assert RunParams.from_request("solar", None, typed, None).factor_overrides == {
        "footprint_share": 0.4,
        "carbon_loss_tco2e_per_ha": {211: 5.0},
    }
