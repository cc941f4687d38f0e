"""Country codes for the legal check: strict ISO 3166-1 alpha-3, validated before any pack is looked up.

The list of codes lives in one place, `aethera.data.countries`. Requests are normalised there (the API
upper-cases); the engine takes only the canonical form, so a code that reaches it in any other shape is
refused rather than guessed at.
"""

from __future__ import annotations

import re

from aethera.data.countries import COUNTRIES, EU27
from aethera.errors import UnknownCountry

_ALPHA3 = re.compile(r"[A-Z]{3}")


def check_country(code: object) -> str:
    """`code` itself when it is a known ISO 3166-1 alpha-3 code; otherwise UnknownCountry.

    The shape is checked first and a malformed input is never echoed (it could be anything a client sent).
    """
    if not isinstance(code, str) or not _ALPHA3.fullmatch(code):
        raise UnknownCountry("country must be an ISO 3166-1 alpha-3 code: three uppercase letters, e.g. DEU")
    if code not in COUNTRIES:
        raise UnknownCountry(f"{code} is not an ISO 3166-1 alpha-3 country code")
    return code


def is_eu_member(code: str) -> bool:
    return code in EU27
