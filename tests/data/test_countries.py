"""ISO 3166-1 alpha-3 validation of the run's country."""

from __future__ import annotations

import pytest

from aethera.data.countries import COUNTRIES, EU27, normalize_country
from aethera.errors import UnknownCountry


def test_table() -> None:
    assert len(COUNTRIES) == 250  # 249 ISO codes + XKX
    assert set(COUNTRIES) >= EU27 and len(EU27) == 27
    assert all(len(c) == 3 and c.isupper() for c in COUNTRIES)


@pytest.mark.parametrize("raw,expected", [("DEU", "DEU"), ("deu", "DEU"), (" esp ", "ESP"), (None, None), ("", None)])
def test_valid(raw: str | None, expected: str | None) -> None:
    assert normalize_country(raw) == expected


@pytest.mark.parametrize("raw", ["DE", "GERMANY", "XXX", "../etc", "D3U", "ÄÖÜ"])
def test_invalid(raw: str) -> None:
    with pytest.raises(UnknownCountry):
        normalize_country(raw)
