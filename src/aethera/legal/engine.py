"""The legal rules engine: screening metrics + country -> the legal object of the API.

    evaluate(metrics, country, natura_sites_in_buffer) -> LegalResult

Every rule of the EU pack and of the country's pack (if there is one) gets a status:
`triggered` (a concern is found, `passed: false`), `passed` (`passed: true`) or `not_evaluable`
(`passed: null`: a metric the outcome depends on could not be computed, or rests on too little
evidence: a layer covering less of the AOI than the pack's `min_coverage`, or a stand-in source that
cannot show the feature tested; such a metric may still trigger a rule, never pass it). `overall_compliant` is
false when any critical rule is triggered, null when none is triggered but a critical rule could not
be evaluated, true otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from aethera.errors import AnalysisError
from aethera.legal import conditions, templates
from aethera.legal.countries import check_country, is_eu_member
from aethera.legal.metrics import METRICS, Provenance
from aethera.legal.packs import SEVERITIES, Rule, packs_for
from aethera.legal.screening import Screening, annex_iii_findings, coerce_sites, habitats_screening

Status = Literal["passed", "triggered", "not_evaluable"]


class RuleStatus(msgspec.Struct, kw_only=True):
    rule_id: str
    rule_name: str
    passed: bool | None
    status: Status
    message: str
    severity: str
    category: str
    details: dict[str, Any]


class SeverityCounts(msgspec.Struct, kw_only=True):
    total: int = 0
    passed: int = 0
    triggered: int = 0
    not_evaluable: int = 0


class Summary(msgspec.Struct, kw_only=True):
    total: int
    passed: int
    triggered: int
    not_evaluable: int
    by_severity: dict[str, SeverityCounts]


class LegalResult(msgspec.Struct, kw_only=True):
    country_code: str | None
    overall_compliant: bool | None
    overall_reason: str
    summary: Summary
    statuses: list[RuleStatus]
    critical_violations: list[RuleStatus]  # triggered, severity critical
    warnings: list[RuleStatus]  # triggered, severity high / medium / low
    informational: list[RuleStatus]  # triggered, severity info
    not_evaluable: list[RuleStatus]
    packs_applied: list[str]
    pack_versions: dict[str, str]
    notes: list[str]
    screening: Screening


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metric values checked against `METRICS`; NaN counts as not computed. A wrong type is a bug."""
    clean: dict[str, Any] = {}
    for name, spec in METRICS.items():
        value = metrics.get(name)
        if value is None:
            clean[name] = None
            continue
        if spec.type is str:
            ok = isinstance(value, str)
        elif spec.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise AnalysisError(f"screening metric {name} has the wrong type for the legal check")
        clean[name] = None if isinstance(value, float) and math.isnan(value) else value
    return clean


def _weak_evidence(rule: Rule, metrics: Mapping[str, Any], provenance: Mapping[str, Provenance]) -> dict[str, str]:
    """Metrics of the rule's condition whose measured value is not evidence enough to pass it, with why.

    A metric is weak when its source covered less of the AOI than the pack's `min_coverage`, or when
    its source cannot resolve the feature it tests (a CORINE stand-in for streams or hamlets).
    """
    weak: dict[str, str] = {}
    for m in conditions.metrics_of(rule.condition):
        p = provenance.get(m)
        if p is None or metrics.get(m) is None:
            continue
        if not p.resolves:
            weak[m] = p.note or f"measured on {p.source}, which cannot resolve what the rule tests"
        elif p.coverage_ratio is not None and p.coverage_ratio < rule.min_coverage:
            weak[m] = (
                f"measured on the covered part only: its source ({p.source}) covers {p.coverage_ratio:.2%} "
                f"of the AOI, below the {rule.min_coverage:.0%} the {rule.pack} pack needs"
                + (f" ({p.note})" if p.note else "")
            )
    return weak


def _evaluate_rule(
    rule: Rule, metrics: dict[str, Any], reasons: Mapping[str, str], provenance: Mapping[str, Provenance]
) -> RuleStatus:
    weak = _weak_evidence(rule, metrics, provenance)
    # A weak metric is known only to lie within its provenance bounds: the rule is decided only if every
    # value there agrees, so a stand-in can show presence (trigger) but never absence (pass).
    bounds = {m: (provenance[m].lower, provenance[m].upper) for m in weak}
    outcome = conditions.evaluate(rule.condition, metrics, bounds)
    used = {m: metrics[m] for m in rule.metrics}
    missing = [m for m in conditions.metrics_of(rule.condition) if metrics[m] is None]
    details: dict[str, Any] = {
        "pack": rule.pack,
        "metrics": used,
        "missing_metrics": missing,
        "insufficient_evidence": dict(weak),
        "provenance": {m: msgspec.to_builtins(provenance[m]) for m in rule.metrics if m in provenance},
        "min_coverage": rule.min_coverage,
        "references": list(rule.references),
        "heuristic": rule.heuristic,
        "basis": rule.basis,
        "annex_iii": list(rule.annex_iii),
        "description": rule.description,
    }
    thresholds = conditions.thresholds_of(rule.condition)
    if outcome is None:
        parts = [
            f"{m} could not be computed for this run" + (f" ({reasons[m]})" if reasons.get(m) else "") for m in missing
        ]
        parts += [
            f"{m} = {templates.fill('{' + m + '}', metrics)} is not evidence enough: {why}" for m, why in weak.items()
        ]
        message = f"Not evaluable: {'; '.join(parts)}; the outcome depends on it."
        status: Status = "not_evaluable"
    elif outcome:
        message, status = templates.fill(rule.message, metrics, thresholds), "triggered"
        if weak:
            message += (
                f" (Found on partial or stand-in data ({', '.join(weak)}): evidence of presence, "
                "which more complete data could only confirm.)"
            )
    else:
        message, status = templates.fill(rule.pass_message, metrics, thresholds), "passed"
    passed = None if status == "not_evaluable" else status == "passed"
    return RuleStatus(
        rule_id=rule.id,
        rule_name=rule.name,
        passed=passed,
        status=status,
        message=message,
        severity=rule.severity,
        category=rule.category,
        details=details,
    )


def evaluate(
    metrics: Mapping[str, Any],
    country: str | None,
    natura_sites_in_buffer: Sequence[Any] | None,
    *,
    metric_reasons: Mapping[str, str] | None = None,
    provenance: Mapping[str, Provenance] | None = None,
) -> LegalResult:
    """Apply the EU pack and the country's pack to a run's screening metrics.

    `country`: ISO 3166-1 alpha-3 (validated before any pack is touched; UnknownCountry otherwise) or
    None (EU pack only). `natura_sites_in_buffer`: the Natura 2000 sites in the zone of influence (each
    with site_code, name, distance_km, optionally overlap_ha), or None when they could not be determined.
    `metric_reasons`: why a metric is None (e.g. "no elevation layer"), quoted in not_evaluable messages.
    `provenance`: per metric, its source, coverage and bounds; a metric on too little coverage or on a
    stand-in that cannot resolve its feature is not evidence enough to pass a rule (see `_weak_evidence`).
    """
    code = check_country(country) if country is not None else None
    clean = _clean_metrics(metrics)
    packs = packs_for(code)
    notes: list[str] = []
    if code is None:
        notes.append("No country given: only the EU pack was applied.")
    elif len(packs) == 1:
        notes.append(f"No national rule pack for {code}: only the EU pack was applied.")
    if code is not None and not is_eu_member(code):
        notes.append(
            f"{code} is not an EU member state: the EU pack is applied as a screening standard, not as binding law."
        )

    statuses: list[RuleStatus] = []
    triggered_rules: list[tuple[Rule, str, dict[str, Any]]] = []
    for pack in packs:
        for rule in pack.rules:
            st = _evaluate_rule(rule, clean, metric_reasons or {}, provenance or {})
            statuses.append(st)
            if st.status == "triggered":
                triggered_rules.append((rule, st.message, st.details["metrics"]))

    by_severity: dict[str, SeverityCounts] = {s: SeverityCounts() for s in SEVERITIES}
    for st in statuses:
        c = by_severity[st.severity]
        c.total += 1
        setattr(c, st.status, getattr(c, st.status) + 1)
    summary = Summary(
        total=len(statuses),
        passed=sum(s.status == "passed" for s in statuses),
        triggered=sum(s.status == "triggered" for s in statuses),
        not_evaluable=sum(s.status == "not_evaluable" for s in statuses),
        by_severity=by_severity,
    )
    triggered = [s for s in statuses if s.status == "triggered"]
    critical = [s for s in triggered if s.severity == "critical"]
    critical_unknown = [s for s in statuses if s.severity == "critical" and s.status == "not_evaluable"]
    if critical:
        overall: bool | None = False
        reason = f"{len(critical)} critical rule(s) triggered: {', '.join(s.rule_id for s in critical)}."
    elif critical_unknown:
        overall = None
        reason = (
            "No critical rule triggered, but these could not be evaluated: "
            f"{', '.join(s.rule_id for s in critical_unknown)}."
        )
    else:
        overall = True
        reason = "No critical rule triggered."

    sites = coerce_sites(natura_sites_in_buffer)
    return LegalResult(
        country_code=code,
        overall_compliant=overall,
        overall_reason=reason,
        summary=summary,
        statuses=statuses,
        critical_violations=critical,
        warnings=[s for s in triggered if s.severity in ("high", "medium", "low")],
        informational=[s for s in triggered if s.severity == "info"],
        not_evaluable=[s for s in statuses if s.status == "not_evaluable"],
        packs_applied=[p.id for p in packs],
        pack_versions={p.id: p.version for p in packs},
        notes=notes,
        screening=Screening(
            habitats_directive_art6_3=habitats_screening(clean, sites),
            eia_annex_iii=annex_iii_findings(triggered_rules),
        ),
    )


def to_builtins(result: LegalResult) -> dict[str, Any]:
    """The legal object as plain JSON-ready data (what `legal.json` and `GET /runs/{id}/legal` serve)."""
    out: dict[str, Any] = msgspec.to_builtins(result)
    return out
