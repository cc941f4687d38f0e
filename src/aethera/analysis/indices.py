"""The four screening indices: biodiversity sensitivity, RESM, AHSM and CIM.

Each is a transparent weighted linear model over named features (`IndexFeatures`), with its weights,
feature ramps and category cut points in `index_weights.toml`. A feature is mapped onto 0..1 by a
clamped linear ramp, weighted and summed; weights are positive, so a score can only move the way the
feature's direction says (monotonic by construction). A feature the run could not compute (None) is
left out: the score rests on the features that exist and the confidence drops by the missing weight
share, and a driver line says what is missing and why. With no feature at all the score is None (no
invented number).

The functions are pure: they take plain values and return plain Structs, so they are tested alone.
"""

from __future__ import annotations

import math
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Literal

import msgspec

from aethera.errors import ConfigError

Category = Literal["very_low", "low", "moderate", "high", "very_high"]
Direction = Literal["increasing", "decreasing"]

WEIGHTS_FILE = "index_weights.toml"
# Scores of other indices the cumulative model takes as features (not fields of IndexFeatures).
SCORE_FEATURES = ("biodiversity_sensitivity_score", "resm_score", "ahsm_score")


class IndexFeatures(msgspec.Struct, kw_only=True):
    """Named inputs of the indices; None means the run could not compute that value.

    Ratios are shares of the covered AOI area (0..1); distances in km from the AOI boundary (0 when touching
    or inside); `land_use_change_tco2e_per_ha` is land-use-change emissions divided by the AOI area.
    """

    project_type: str | None = None
    protected_overlap_pct: float | None = None
    distance_to_protected_km: float | None = None
    natura2000_sites_in_buffer: int | None = None
    distance_to_settlement_km: float | None = None
    distance_to_water_km: float | None = None
    water_ratio: float | None = None
    wetland_ratio: float | None = None
    forest_ratio: float | None = None
    shrub_ratio: float | None = None
    agricultural_ratio: float | None = None
    artificial_ratio: float | None = None
    natural_habitat_ratio: float | None = None
    mean_slope_deg: float | None = None
    land_use_change_tco2e_per_ha: float | None = None
    # features measured on a fallback source (e.g. water from CORINE classes): count less in confidence
    fallback_features: tuple[str, ...] = ()
    # why a feature is None, shown in its driver line (e.g. "no elevation layer in the catalog")
    missing_reasons: dict[str, str] = {}
    # share of the AOI (0..1) a feature's layer covers (land-cover ratios): scales its confidence weight
    feature_coverage: dict[str, float] = {}
    # distance features whose receptor was searched for and not found: the radius searched, km. The
    # true distance is larger, so the feature is scored at this bound (see `_feature_values`), never
    # left out: leaving it out would score "nothing within 100 km" below "found at 60 km".
    not_found_within_km: dict[str, float] = {}


class Driver(msgspec.Struct, kw_only=True):
    """One feature's part in a score: `contribution` is in score points (contributions sum to the score)."""

    feature: str
    value: float | None
    contribution: float | None
    normalised: float | None
    weight: float
    direction: Direction
    note: str | None = None


class ModelInfo(msgspec.Struct, kw_only=True):
    name: str
    version: str


class IndexResult(msgspec.Struct, kw_only=True):
    score: float | None
    category: Category | None
    confidence: float
    drivers: list[Driver]
    model: ModelInfo
    # sub-scores per feature group (AHSM: flood, wildfire, landslide); None when a group has no input
    components: dict[str, float | None] = {}
    # CIM: the effective weight of every raw feature (signed share of the score it moves over its
    # ramp, through every path: directly and through the sub-indices); see `effective_weights`
    effective_weights: dict[str, float] = {}


# --- the data file --------------------------------------------------------------------------------


class FeatureSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    feature: str
    weight: float
    direction: Direction
    low: float
    high: float
    why: str
    group: str | None = None
    if_missing: str | None = None


class ModelSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    version: str
    description: str
    features: list[FeatureSpec]


class CategorySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    cut_points: list[float]
    labels: list[Category]


class ConfidenceSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    fallback_factor: float


class IndexWeights(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    categories: CategorySpec
    confidence: ConfidenceSpec
    models: dict[str, ModelSpec]


REQUIRED_MODELS = ("biodiversity_sensitivity", "resm_solar", "resm_wind", "ahsm", "cim")
_NOT_FEATURES = frozenset(
    {"project_type", "fallback_features", "missing_reasons", "not_found_within_km", "feature_coverage"}
)


def parse_weights(text: str) -> IndexWeights:
    """Parse and check a weights file; ConfigError names what is wrong."""
    try:
        weights = msgspec.convert(tomllib.loads(text), IndexWeights)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"index weights file is invalid: {exc}") from None
    cuts = weights.categories.cut_points
    if len(weights.categories.labels) != len(cuts) + 1:
        raise ConfigError("index weights: there must be one more category label than cut points")
    if any(not 0.0 < c < 100.0 for c in cuts) or cuts != sorted(set(cuts)):
        raise ConfigError("index weights: cut points must be strictly ascending inside 0..100")
    if not 0.0 <= weights.confidence.fallback_factor <= 1.0:
        raise ConfigError("index weights: confidence.fallback_factor must lie in 0..1")
    missing = [m for m in REQUIRED_MODELS if m not in weights.models]
    if missing:
        raise ConfigError(f"index weights: models missing: {', '.join(missing)}")
    known = set(IndexFeatures.__struct_fields__) - _NOT_FEATURES
    for key, model in weights.models.items():
        allowed = known | set(SCORE_FEATURES) if key == "cim" else known
        seen: set[str] = set()
        if not model.features:
            raise ConfigError(f"index weights: model {key} has no features")
        for f in model.features:
            where = f"model {key}, feature {f.feature}"
            if f.feature not in allowed:
                raise ConfigError(f"index weights: {where}: unknown feature")
            if f.feature in seen:
                raise ConfigError(f"index weights: {where}: listed twice")
            seen.add(f.feature)
            if not (math.isfinite(f.weight) and f.weight > 0):
                raise ConfigError(f"index weights: {where}: weight must be a positive number")
            if not (math.isfinite(f.low) and math.isfinite(f.high) and f.low < f.high):
                raise ConfigError(f"index weights: {where}: low must be below high")
    return weights


@lru_cache(maxsize=1)
def load_weights() -> IndexWeights:
    """The packaged weights file, parsed and checked once per process."""
    text = resources.files("aethera.analysis").joinpath(WEIGHTS_FILE).read_text(encoding="utf-8")
    return parse_weights(text)


# --- the model ------------------------------------------------------------------------------------


def _usable(value: object) -> float | None:
    """A number the model can use, or None (missing, NaN or not a number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return None if math.isnan(v) else v


def _ramp(spec: FeatureSpec, value: float) -> float:
    t = (value - spec.low) / (spec.high - spec.low)
    t = min(1.0, max(0.0, t))  # also maps +-inf onto the ends
    return t if spec.direction == "increasing" else 1.0 - t


def categorize(score: float, weights: IndexWeights | None = None) -> Category:
    """The category of a 0..100 score by the fixed cut points of the data file."""
    w = weights or load_weights()
    for cut, label in zip(w.categories.cut_points, w.categories.labels):
        if score < cut:
            return label
    return w.categories.labels[-1]


def evaluate_model(
    key: str,
    values: dict[str, object],
    *,
    reliability: dict[str, float] | None = None,
    missing_reasons: dict[str, str] | None = None,
    value_notes: dict[str, str] | None = None,
    weights: IndexWeights | None = None,
) -> IndexResult:
    """Score one model of the weights file on `values` (feature name -> number or None).

    `reliability` (0..1 per feature, default 1) scales a feature's weight in the confidence only, never
    in the score: a fallback source or a less confident sub-index is still the best value there is.
    `value_notes` says how a present value was obtained (e.g. a search limit used as a lower bound).
    """
    w = weights or load_weights()
    model = w.models[key]
    reliability = reliability or {}
    missing_reasons = missing_reasons or {}
    value_notes = value_notes or {}
    total_weight = sum(f.weight for f in model.features)
    present = [(f, v) for f in model.features if (v := _usable(values.get(f.feature))) is not None]
    present_weight = sum(f.weight for f, _ in present)

    drivers: list[Driver] = []
    for f in model.features:
        v = _usable(values.get(f.feature))
        if v is None:
            reason = missing_reasons.get(f.feature) or f.if_missing or "not available for this run"
            drivers.append(
                Driver(
                    feature=f.feature,
                    value=None,
                    contribution=None,
                    normalised=None,
                    weight=f.weight,
                    direction=f.direction,
                    note=f"{reason}; left out of the score, confidence lowered",
                )
            )
            continue
        t = _ramp(f, v)
        note = None
        if reliability.get(f.feature, 1.0) < 1.0:
            note = f"{f.why} (fallback source, partial coverage or less reliable source: counts {reliability[f.feature]:.2f} in confidence)"
        if f.feature in value_notes:
            note = f"{note or f.why}; {value_notes[f.feature]}"
        drivers.append(
            Driver(
                feature=f.feature,
                value=v,
                contribution=round(100.0 * f.weight * t / present_weight, 2),
                normalised=round(t, 4),
                weight=f.weight,
                direction=f.direction,
                note=note or f.why,
            )
        )
    # largest contributions first; missing features last, in file order
    drivers.sort(key=lambda d: (d.contribution is None, -(d.contribution or 0.0)))

    confidence_weight = sum(f.weight * min(1.0, max(0.0, reliability.get(f.feature, 1.0))) for f, _ in present)
    confidence = round(confidence_weight / total_weight, 3)

    score: float | None = None
    category: Category | None = None
    if present:
        raw = 100.0 * sum(f.weight * _ramp(f, v) for f, v in present) / present_weight
        score = round(min(100.0, max(0.0, raw)), 1)  # rounding is monotonic, so order is kept
        category = categorize(score, w)

    components: dict[str, float | None] = {}
    for group in dict.fromkeys(f.group for f in model.features if f.group):
        members = [(f, v) for f, v in present if f.group == group]
        gw = sum(f.weight for f, _ in members)
        components[group] = round(100.0 * sum(f.weight * _ramp(f, v) for f, v in members) / gw, 1) if members else None

    return IndexResult(
        score=score,
        category=category,
        confidence=confidence,
        drivers=drivers,
        model=ModelInfo(name=model.name, version=model.version),
        components=components,
    )


def _feature_values(features: IndexFeatures) -> dict[str, object]:
    """Feature name -> value; a distance not found within the search radius takes that radius.

    The radius is a lower bound of the true distance. Every distance ramp ends well inside the 100 km
    search limit, so the bound scores exactly what the true distance would; and since a found receptor
    lies within the radius, "none found" always scores at least as far away as any found one
    (farther from protected areas never lowers suitability, never raises sensitivity).
    """
    values: dict[str, object] = {name: getattr(features, name) for name in features.__struct_fields__}
    for name, bound_km in features.not_found_within_km.items():
        if name in values and values[name] is None and _usable(bound_km) is not None:
            values[name] = float(bound_km)
    return values


def _value_notes(features: IndexFeatures) -> dict[str, str]:
    return {
        name: f"none found within {bound:g} km: scored at {bound:g} km (the true distance is larger)"
        for name, bound in features.not_found_within_km.items()
        if getattr(features, name, 0) is None
    }


def _reliability(features: IndexFeatures, weights: IndexWeights) -> dict[str, float]:
    # A fallback source counts `fallback_factor`; a feature measured on part of the AOI counts its coverage.
    out = {name: weights.confidence.fallback_factor for name in features.fallback_features}
    for name, coverage in features.feature_coverage.items():
        out[name] = out.get(name, 1.0) * min(1.0, max(0.0, coverage))
    return out


def biodiversity_sensitivity(features: IndexFeatures, weights: IndexWeights | None = None) -> IndexResult:
    """Biodiversity sensitivity, 0 (nothing of value near) to 100 (inside protected, natural habitat)."""
    w = weights or load_weights()
    return evaluate_model(
        "biodiversity_sensitivity",
        _feature_values(features),
        weights=w,
        reliability=_reliability(features, w),
        missing_reasons=features.missing_reasons,
        value_notes=_value_notes(features),
    )


def resm(features: IndexFeatures, weights: IndexWeights | None = None) -> IndexResult:
    """Renewable-energy site suitability for the project type, 0 (unsuitable) to 100 (well suited)."""
    w = weights or load_weights()
    key = f"resm_{features.project_type}"
    if features.project_type is None or key not in w.models:
        # no model for this technology: say so rather than score it with another technology's model
        return IndexResult(
            score=None,
            category=None,
            confidence=0.0,
            drivers=[
                Driver(
                    feature="project_type",
                    value=None,
                    contribution=None,
                    normalised=None,
                    weight=0.0,
                    direction="increasing",
                    note=f"no suitability model for project type {features.project_type!r}",
                )
            ],
            model=ModelInfo(name="resm_wlc", version=w.models["resm_solar"].version),
        )
    return evaluate_model(
        key,
        _feature_values(features),
        weights=w,
        reliability=_reliability(features, w),
        missing_reasons=features.missing_reasons,
        value_notes=_value_notes(features),
    )


def ahsm(features: IndexFeatures, weights: IndexWeights | None = None) -> IndexResult:
    """Asset hazard susceptibility (flood, wildfire, landslide), 0 (low) to 100 (high)."""
    w = weights or load_weights()
    return evaluate_model(
        "ahsm",
        _feature_values(features),
        weights=w,
        reliability=_reliability(features, w),
        missing_reasons=features.missing_reasons,
        value_notes=_value_notes(features),
    )


def _sub_model_key(score_feature: str, project_type: str | None) -> str:
    return {
        "biodiversity_sensitivity_score": "biodiversity_sensitivity",
        "resm_score": f"resm_{project_type}",
        "ahsm_score": "ahsm",
    }[score_feature]


def _without(model: ModelSpec, excluded: set[str]) -> ModelSpec:
    """`model` without the features in `excluded` (what CIM weighs directly)."""
    return msgspec.structs.replace(model, features=[f for f in model.features if f.feature not in excluded])


def cim(
    features: IndexFeatures,
    sensitivity: IndexResult,
    suitability: IndexResult,
    hazard: IndexResult,
    weights: IndexWeights | None = None,
) -> IndexResult:
    """Cumulative impact, 0 (low) to 100 (high), over the other three indices and raw figures.

    No input counts twice: the raw features CIM weighs directly (protected overlap, natural habitat,
    land-use change) are taken out of the sub-index scores CIM reads, which are the sub-indices
    re-scored on their remaining features. So each stated CIM weight is the input's effective weight
    (a test measures it as the score's change over the input's ramp). Raw features CIM does not list
    reach it only through the sub-indices; their effective weights are reported in `effective_weights`.

    A sub-index enters with its own confidence as reliability, so CIM is never more certain than
    the indices it rests on.
    """
    w = weights or load_weights()
    model = w.models["cim"]
    direct = {f.feature for f in model.features if f.feature not in SCORE_FEATURES}
    values = _feature_values(features)
    reliability = _reliability(features, w)
    reasons = dict(features.missing_reasons)
    notes = _value_notes(features)
    for name, result in zip(SCORE_FEATURES, (sensitivity, suitability, hazard)):
        residual = _residual_score(name, features, direct, w)
        values[name] = residual
        reliability[name] = result.confidence
        if result.score is None:
            reasons[name] = f"{result.model.name} has no score"
        elif residual is None:
            reasons[name] = f"{result.model.name} rests only on inputs CIM weighs directly"
        else:
            notes[name] = (
                f"{result.model.name} re-scored without {', '.join(sorted(direct))} (weighed directly "
                f"here, so not counted twice); its published score is {result.score:g}"
            )
    out = evaluate_model("cim", values, weights=w, reliability=reliability, missing_reasons=reasons, value_notes=notes)
    out.effective_weights = effective_weights(features.project_type, w)
    return out


def _residual_score(score_feature: str, features: IndexFeatures, direct: set[str], w: IndexWeights) -> float | None:
    key = _sub_model_key(score_feature, features.project_type)
    if key not in w.models:
        return None
    residual = _without(w.models[key], direct)
    if not residual.features:
        return None
    scratch = msgspec.structs.replace(w, models={**w.models, key: residual})
    return evaluate_model(key, _feature_values(features), weights=scratch).score


def effective_weights(project_type: str | None, weights: IndexWeights | None = None) -> dict[str, float]:
    """Each raw feature's effective weight in CIM, with every input present: the share of the CIM
    score (0..1, signed: positive raises the impact) the feature moves when it runs over its whole
    ramp, summed over its paths (directly, and through each sub-index CIM reads). A feature whose
    ramps differ between paths moves this much once it has run over all of them.
    """
    w = weights or load_weights()
    model = w.models["cim"]
    total = sum(f.weight for f in model.features)
    direct = {f.feature for f in model.features if f.feature not in SCORE_FEATURES}
    sign = {"increasing": 1.0, "decreasing": -1.0}
    out: dict[str, float] = {}
    for f in model.features:
        if f.feature not in SCORE_FEATURES:
            out[f.feature] = out.get(f.feature, 0.0) + sign[f.direction] * f.weight / total
            continue
        key = _sub_model_key(f.feature, project_type)
        if key not in w.models:
            continue
        residual = _without(w.models[key], direct)
        sub_total = sum(g.weight for g in residual.features)
        for g in residual.features:
            share = sign[f.direction] * f.weight / total * sign[g.direction] * g.weight / sub_total
            out[g.feature] = out.get(g.feature, 0.0) + share
    return {name: round(value, 6) for name, value in sorted(out.items())}


class Indices(msgspec.Struct, kw_only=True):
    biodiversity_sensitivity: IndexResult
    resm: IndexResult
    ahsm: IndexResult
    cim: IndexResult


def compute_all(features: IndexFeatures, weights: IndexWeights | None = None) -> Indices:
    """All four indices on one feature set."""
    w = weights or load_weights()
    s = biodiversity_sensitivity(features, w)
    r = resm(features, w)
    h = ahsm(features, w)
    return Indices(biodiversity_sensitivity=s, resm=r, ahsm=h, cim=cim(features, s, r, h, w))
