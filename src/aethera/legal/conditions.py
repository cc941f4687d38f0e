"""Rule conditions: parsed and checked when a pack loads, evaluated in three-valued logic at run time.

A condition says when a rule is TRIGGERED (a concern is found). Grammar (one key per node):

    {"all": [node, ...]}  {"any": [node, ...]}  {"not": node}
    {metric: {op: value, ...}}      op in > >= < <= == != in not_in (several ops in one leaf: all hold)

Evaluation is Kleene three-valued: a leaf whose metric is None is UNKNOWN, `all` is False as soon as
one member is False, `any` is True as soon as one member is True, otherwise UNKNOWN propagates. So a
rule becomes `not_evaluable` exactly when the missing values could change its outcome, and a result
that is certain whatever the missing values are is still reported (with the missing metrics listed).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

import msgspec

from aethera.errors import RulePackError
from aethera.legal.metrics import METRICS, MetricSpec

NUMERIC_OPS = (">", ">=", "<", "<=", "==", "!=", "in", "not_in")
TEXT_OPS = ("==", "!=", "in", "not_in")


class Leaf(msgspec.Struct, frozen=True):
    metric: str
    tests: tuple[tuple[str, Any], ...]  # (op, value); value of `in`/`not_in` is a tuple


class All(msgspec.Struct, frozen=True):
    members: tuple[Node, ...]


class AnyOf(msgspec.Struct, frozen=True):
    members: tuple[Node, ...]


class Not(msgspec.Struct, frozen=True):
    member: Node


Node = Leaf | All | AnyOf | Not


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(where: str, metric: str, spec: MetricSpec, op: str, value: object) -> Any:
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise RulePackError(f"{where}: {metric} {op} needs a non-empty list")
        return tuple(_check_value(where, metric, spec, "==", v) for v in value)
    if spec.type is str:
        if not isinstance(value, str):
            raise RulePackError(f"{where}: {metric} is text; {op} needs a string, got {value!r}")
        return value
    if spec.type is int and op in ("==", "!=") and not (isinstance(value, int) and not isinstance(value, bool)):
        raise RulePackError(f"{where}: {metric} is a count; {op} needs an integer, got {value!r}")
    if not _is_number(value):
        raise RulePackError(f"{where}: {metric} is a number; {op} needs a finite number, got {value!r}")
    return value


def unknown_metric_error(where: str, name: str) -> RulePackError:
    close = difflib.get_close_matches(name, METRICS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return RulePackError(f"{where}: unknown metric {name!r}{hint}")


def parse_condition(raw: object, where: str = "condition") -> Node:
    """Check a raw condition (from TOML) against the grammar and `METRICS`; RulePackError names the spot."""
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise RulePackError(f"{where}: a condition node must be a table with exactly one key")
    ((key, body),) = raw.items()
    if key in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise RulePackError(f"{where}.{key}: needs a non-empty list of conditions")
        members = tuple(parse_condition(m, f"{where}.{key}[{i}]") for i, m in enumerate(body))
        return All(members) if key == "all" else AnyOf(members)
    if key == "not":
        return Not(parse_condition(body, f"{where}.not"))
    spec = METRICS.get(key)
    if spec is None:
        raise unknown_metric_error(where, key)
    if not isinstance(body, Mapping) or not body:
        raise RulePackError(f"{where}.{key}: needs a table of {{operator = value}}")
    allowed = TEXT_OPS if spec.type is str else NUMERIC_OPS
    tests = []
    for op, value in body.items():
        if op not in NUMERIC_OPS:
            raise RulePackError(f"{where}.{key}: unknown operator {op!r} (use {' '.join(NUMERIC_OPS)})")
        if op not in allowed:
            raise RulePackError(f"{where}.{key}: operator {op!r} does not apply to a text metric")
        tests.append((op, _check_value(f"{where}.{key}", key, spec, op, value)))
    return Leaf(key, tuple(tests))


def metrics_of(node: Node) -> list[str]:
    """Metric names a condition reads, in order of first use."""
    if isinstance(node, Leaf):
        return [node.metric]
    members = (node.member,) if isinstance(node, Not) else node.members
    out: dict[str, None] = {}
    for m in members:
        out.update(dict.fromkeys(metrics_of(m)))
    return list(out)


def _compare(op: str, value: Any, target: Any) -> bool:
    if op == ">":
        return bool(value > target)
    if op == ">=":
        return bool(value >= target)
    if op == "<":
        return bool(value < target)
    if op == "<=":
        return bool(value <= target)
    if op == "==":
        return bool(value == target)
    if op == "!=":
        return bool(value != target)
    if op == "in":
        return value in target
    return value not in target  # not_in; any other op was refused when the pack loaded


Bound = tuple[float | None, float | None]  # (lower, upper) of a value known only to lie in a range; None = open


def _interval_test(op: str, lo: float, hi: float, target: Any) -> bool | None:
    """Whether `value op target` holds for every value in [lo, hi] (True), for none (False), or it depends (None)."""
    if op == ">":
        return True if lo > target else False if hi <= target else None
    if op == ">=":
        return True if lo >= target else False if hi < target else None
    if op == "<":
        return True if hi < target else False if lo >= target else None
    if op == "<=":
        return True if hi <= target else False if lo > target else None
    if op in ("==", "in"):
        targets = target if op == "in" else (target,)
        if lo == hi:
            return lo in targets
        return None if any(lo <= t <= hi for t in targets) else False
    inner = _interval_test("in" if op == "not_in" else "==", lo, hi, target)  # != and not_in
    return None if inner is None else not inner


def _kleene_all(results: list[bool | None]) -> bool | None:
    if False in results:
        return False
    return None if None in results else True


def evaluate(node: Node, metrics: Mapping[str, Any], bounds: Mapping[str, Bound] | None = None) -> bool | None:
    """True (triggered), False (not triggered) or None (unknown: a needed metric is missing).

    A metric named in `bounds` is known only to lie in that range (its measured value is not taken as
    the truth: partial coverage, or a stand-in that cannot show the feature): its leaf is True or False
    only when every value of the range agrees, else unknown.
    """
    if isinstance(node, Leaf):
        if bounds and node.metric in bounds:
            lower, upper = bounds[node.metric]
            lo = -math.inf if lower is None else lower
            hi = math.inf if upper is None else upper
            return _kleene_all([_interval_test(op, lo, hi, target) for op, target in node.tests])
        value = metrics.get(node.metric)
        if value is None:
            return None
        return all(_compare(op, value, target) for op, target in node.tests)
    if isinstance(node, Not):
        inner = evaluate(node.member, metrics, bounds)
        return None if inner is None else not inner
    results = [evaluate(m, metrics, bounds) for m in node.members]
    if isinstance(node, All):
        if False in results:
            return False
        return None if None in results else True
    if True in results:
        return True
    return None if None in results else False


def thresholds_of(node: Node) -> dict[str, list[Any]]:
    """The values each metric is compared with in a condition (for messages that must show the difference)."""
    out: dict[str, list[Any]] = {}
    if isinstance(node, Leaf):
        for _op, target in node.tests:
            out.setdefault(node.metric, []).extend(target if isinstance(target, tuple) else (target,))
        return out
    for m in (node.member,) if isinstance(node, Not) else node.members:
        for name, values in thresholds_of(m).items():
            out.setdefault(name, []).extend(values)
    return out
