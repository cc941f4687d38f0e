"""Strict patterns for request values."""

from __future__ import annotations

import pytest

from aethera.errors import InvalidInput, NotFound, UnknownCountry
from aethera.security.validation import check_country, check_id, check_layer, check_storage_key, check_tenant, is_id

GOOD_ID = "0123456789abcdef0123456789abcdef"
HOSTILE = ["", "../x", "..", "/etc/passwd", "a/b", "a\\b", "x\x00y", "x\ny", "%2e%2e", " ", "*", "a b"]


def test_ids() -> None:
    assert check_id(GOOD_ID) == GOOD_ID
    for bad in HOSTILE + [GOOD_ID.upper(), GOOD_ID + "\n", GOOD_ID[:-1], GOOD_ID + "0", "g" * 32]:
        assert not is_id(bad)
        with pytest.raises(NotFound):
            check_id(bad, "run")


def test_countries() -> None:
    assert check_country("DEU") == "DEU"
    assert check_country("esp") == "ESP"
    for bad in HOSTILE + ["DE", "DEUT", "DE1", "DEU\n", "ÄÖÜ"]:
        with pytest.raises(UnknownCountry):
            check_country(bad)


def test_layers() -> None:
    for good in ("natura", "overlap", "sensitivity"):
        assert check_layer(good) == good
    for bad in HOSTILE + ["Natura", "natura\n", "landcover", "natura.geojson"]:
        with pytest.raises(NotFound):
            check_layer(bad)


def test_tenants() -> None:
    for good in ("acme", "a", "globex-eu_2", "0day"):
        assert check_tenant(good) == good
    for bad in HOSTILE + ["Acme", "-acme", "_x", "a" * 64, "acme\n", "acme:x"]:
        with pytest.raises(InvalidInput):
            check_tenant(bad)


def test_storage_keys() -> None:
    for good in (f"runs/{GOOD_ID}/aoi.geojson", f"uploads/{GOOD_ID}/aoi.zip", "projects/x.json"):
        assert check_storage_key(good) == good
    for bad in [h for h in HOSTILE if h != "a/b"] + [
        "/abs/key", "runs/../x", "runs/./x", "runs//x", "runs/x/", ".hidden", "C:/x", "runs/x\x00",
        "runs/" + "a" * 600, "runs/.../x",
    ]:
        with pytest.raises(InvalidInput):
            check_storage_key(bad)
