"""Country codes: ISO 3166-1 alpha-3 validation before any rule pack is looked up."""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from importlib import resources

from aethera.errors import UnknownCountry

_ALPHA3 = re.compile(r"[A-Z]{3}")


@lru_cache(maxsize=1)
def _codes() -> tuple[frozenset[str], frozenset[str]]:
    data = tomllib.loads(resources.files("aethera.legal").joinpath("countries.toml").read_text(encoding="utf-8"))
    return frozenset(data["alpha3"]), frozenset(data["eu_member_states"])


def check_country(code: object) -> str:
    """`code` itself when it is an ISO 3166-1 alpha-3 code; otherwise UnknownCountry.

    The shape is checked first and the raw input is never echoed (it could be anything a client sent).
    """
    if not isinstance(code, str) or not _ALPHA3.fullmatch(code):
        raise UnknownCountry("country must be an ISO 3166-1 alpha-3 code: three uppercase letters, e.g. DEU")
    if code not in _codes()[0]:
        raise UnknownCountry(f"{code} is not an ISO 3166-1 alpha-3 country code")
    return code


def is_eu_member(code: str) -> bool:
    return code in _codes()[1]
