"""Every default is stated once, in `settings.Settings`: code that runs without settings of its own
(a Python caller, the CLI, the upload checks) follows that one statement, so changing it there
changes it everywhere."""

from __future__ import annotations

import msgspec
import pytest

from aethera import settings as config_module
from aethera.analysis.params import RunParams
from aethera.security.archives import ArchiveLimits


def test_defaults_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = msgspec.structs.replace(
        config_module.DEFAULTS,
        solar_mw_per_ha=0.7,
        wind_mw_per_ha=0.05,
        default_buffer_km=7.5,
        archive_max_members=9,
        archive_max_unpacked_bytes=1234,
        archive_max_ratio=11.0,
    )
    monkeypatch.setattr(config_module, "DEFAULTS", changed)
    solar = RunParams.from_request("solar", None, None)
    assert solar.buffer_km == 7.5 and solar.density_mw_per_ha == 0.7
    assert RunParams.from_request("wind", None, {}).density_mw_per_ha == 0.05
    assert ArchiveLimits() == ArchiveLimits(max_members=9, max_unpacked_bytes=1234, max_ratio=11.0)


def test_the_defaults_are_the_settings_defaults() -> None:
    assert config_module.load_settings({}) == config_module.DEFAULTS
    assert ArchiveLimits() == ArchiveLimits.from_settings(config_module.DEFAULTS)
    # settings given: they win over the defaults
    given = config_module.load_settings({"AETHERA_DEFAULT_BUFFER_KM": "3", "AETHERA_SOLAR_MW_PER_HA": "0.4"})
    params = RunParams.from_request("solar", None, None, given)
    assert params.buffer_km == 3.0 and params.density_mw_per_ha == 0.4
