"""Strict patterns for ids and tenant names."""

from __future__ import annotations

import pytest

from aethera.errors import InvalidInput, NotFound
from aethera.security.validation import check_id, check_tenant, is_id

GOOD_ID = "0123456789abcdef0123456789abcdef"
HOSTILE = ["", "../x", "..", "/etc/passwd", "a/b", "a\\b", "x\x00y", "x\ny", "%2e%2e", " ", "*", "a b"]


def test_ids() -> None:
    assert check_id(GOOD_ID) == GOOD_ID
    for bad in [*HOSTILE, GOOD_ID.upper(), GOOD_ID + "\n", GOOD_ID[:-1], GOOD_ID + "0", "g" * 32]:
        assert not is_id(bad)
        with pytest.raises(NotFound):
            check_id(bad, "run")


def test_tenants() -> None:
    for good in ("acme", "a", "globex-eu_2", "0day"):
        assert check_tenant(good) == good
    for bad in [*HOSTILE, "Acme", "-acme", "_x", "a" * 64, "acme\n", "acme:x"]:
        with pytest.raises(InvalidInput):
            check_tenant(bad)
