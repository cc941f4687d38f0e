"""Message templates: Python format strings over metric names, checked at load, always filled at run time.

Only bare metric names are allowed as fields (no attribute or index access, no nested specs): a pack is
data, and a format string that could walk object attributes is not data. Each field's format spec is
tried on a sample of the metric's type when the pack loads, so `{aoi_area_ha:d}` fails there, not in a
run. A missing value is written as "n/a" whatever its spec.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from aethera.errors import RulePackError
from aethera.legal.conditions import unknown_metric_error
from aethera.legal.metrics import METRICS

MISSING_TEXT = "n/a"
_SAMPLES: dict[type, Any] = {float: 1.5, int: 3, str: "solar"}
_formatter = string.Formatter()


def check_template(template: str, where: str) -> tuple[str, ...]:
    """The metric names a template uses; RulePackError when it is malformed or names an unknown metric."""
    try:
        parts = list(_formatter.parse(template))
    except ValueError as exc:
        raise RulePackError(f"{where}: malformed template ({exc})") from None
    names: dict[str, None] = {}
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field == "" or not field.isidentifier():
            raise RulePackError(f"{where}: template field {{{field}}} must be a metric name")
        if field not in METRICS:
            raise unknown_metric_error(where, field)
        if conversion is not None:
            raise RulePackError(f"{where}: template field {{{field}!{conversion}}}: conversions are not allowed")
        if spec and "{" in spec:
            raise RulePackError(f"{where}: template field {{{field}}}: nested format specs are not allowed")
        try:
            format(_SAMPLES[METRICS[field].type], spec or "")
        except (ValueError, TypeError):
            raise RulePackError(f"{where}: format spec {spec!r} does not fit metric {field}") from None
        names[field] = None
    return tuple(names)


_PRECISION = re.compile(r"^(?P<head>.*\.)(?P<digits>\d+)(?P<kind>[fFeE%])$")
_MAX_DIGITS = 10


def _format(value: Any, spec: str, thresholds: Iterable[Any]) -> str:
    """`value` in `spec`, with more decimals while it would print like a threshold it differs from.

    A message must show why a test failed: 0.4996 against ">= 0.5" reads "49.96%", never "50%".
    """
    text = format(value, spec)
    match = _PRECISION.match(spec)
    if match is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return text
    digits = int(match["digits"])
    close = [t for t in thresholds if isinstance(t, (int, float)) and not isinstance(t, bool) and t != value]
    while digits < _MAX_DIGITS and any(format(t, spec) == text for t in close):
        digits += 1
        spec = f"{match['head']}{digits}{match['kind']}"
        text = format(value, spec)
    return text


def fill(template: str, metrics: Mapping[str, Any], thresholds: Mapping[str, Iterable[Any]] | None = None) -> str:
    """The template with every field filled; a missing value reads "n/a".

    `thresholds`: the values each metric is compared with in the rule; a value that would print like
    one of them gets more decimals.
    """
    out: list[str] = []
    for literal, field, spec, _conversion in _formatter.parse(template):
        out.append(literal)
        if field is None:
            continue
        value = metrics.get(field)
        limits = (thresholds or {}).get(field, ())
        out.append(MISSING_TEXT if value is None else _format(value, spec or "", limits))
    return "".join(out)
