"""Wire types of the REST API (docs api.md) and the records the service stores.

Request bodies are decoded straight into these Structs (`msgspec.json.decode(body, type=RunCreate)`),
so a wrong type is refused at the edge with the offending field named. Field names of the API types
are a contract with the frontend: add fields, never rename or drop one.

Timestamps are ISO 8601 strings with an explicit `+00:00` offset (`utc_now_iso()`), written as text so
every consumer sees exactly the form api.md promises.
"""

from __future__ import annotations

import enum
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from aethera.keyspace import ID_PATTERN

# `(?!\n)`: in Python `$` also matches before a final newline ("DEU\n" would pass); the lookahead
# refuses that and reads the same in every JSON Schema (ECMA-262) regex engine (ID_PATTERN: keyspace)
COUNTRY_PATTERN = r"^[A-Z]{3}(?!\n)$"
# who owns records written while auth is off, and records written before tenants existed
DEFAULT_TENANT = "default"

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
CountryCode = Annotated[str, msgspec.Meta(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-3")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ProjectType = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
AoiPath = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


def utc_now_iso() -> str:
    """Now, as ISO 8601 with a `+00:00` offset and millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunStatus(str, enum.Enum):
    """Where a run (and its task) stands. The last three are final."""

    PENDING = "PENDING"  # stored and queued (or waiting for a retry); no worker is on it
    PROCESSING = "PROCESSING"  # a worker holds its lease and runs the pipeline
    COMPLETED = "COMPLETED"  # every output is stored; results are served
    FAILED = "FAILED"  # stopped with an error a user can act on (`error`)
    REVOKED = "REVOKED"  # cancelled by the user; its outputs are never served

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.REVOKED})


# --- projects ------------------------------------------------------------------------------------


class ProjectCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /projects`. An unknown key is a 422 naming it, not silently dropped (a misspelt
    `contry` would otherwise create a project without its country)."""

    name: Name
    country: CountryCode | None = None
    sector: ShortText | None = None


class Project(msgspec.Struct, kw_only=True):
    """A project as stored (`projects/{id}.json`) and as answered."""

    id: str
    name: str
    country: str | None = None
    sector: str | None = None
    created_at: str
    tenant: str = DEFAULT_TENANT  # the owner; another tenant's request sees 404


# --- runs ----------------------------------------------------------------------------------------


# The run parameters a client may set, with the ranges `analysis.params.RunParams` accepts; an
# unknown key is refused (422 naming it), so nothing of the client's choosing is stored beyond these.
# The largest float as a bound: JSON cannot carry infinity, so this only keeps it out of Python callers'
# configs (`msgspec.convert`), and the schema still says "any number >= 0".
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=sys.float_info.max)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
CorineCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,3}(?!\n)$", description='a CORINE code such as "312"')]
MAX_CARBON_LOSS_CODES = 64  # CORINE has 44 level-3 classes


class EmissionFactorOverrides(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """`config.emission_factors`: per-run overrides of the emission factor file (a key left out keeps
    the file's value)."""

    construction_tco2e_per_mw: NonNegative | msgspec.UnsetType = msgspec.UNSET
    operation_tco2e_per_mw_year: NonNegative | msgspec.UnsetType = msgspec.UNSET
    capacity_factor: Fraction | msgspec.UnsetType = msgspec.UNSET
    grid_tco2e_per_mwh: NonNegative | msgspec.UnsetType = msgspec.UNSET
    footprint_share: Fraction | msgspec.UnsetType = msgspec.UNSET
    carbon_loss_tco2e_per_ha: (
        Annotated[
            dict[CorineCode, NonNegative],
            msgspec.Meta(max_length=MAX_CARBON_LOSS_CODES, description="tCO2e lost per ha, by CORINE code"),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    first_operating_year: (
        Annotated[
            int,
            msgspec.Meta(
                ge=2000,
                le=2100,
                description="first year of operation on the grid decarbonisation trajectory; "
                "default: the year after the run",
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


BufferM = Annotated[float, msgspec.Meta(ge=0, le=50_000, description="buffer, metres")]
MAX_ELIGIBILITY_CODES = 64


class _RuleSwitch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    enabled: bool | msgspec.UnsetType = msgspec.UNSET  # false switches the rule off for this run


class LandCoverRuleOverride(_RuleSwitch, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """CORINE level-3 codes to exclude, or the only codes eligible (one of the two)."""

    exclude: (
        Annotated[list[Annotated[int, msgspec.Meta(ge=100, le=999)]], msgspec.Meta(max_length=MAX_ELIGIBILITY_CODES)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    include: (
        Annotated[list[Annotated[int, msgspec.Meta(ge=100, le=999)]], msgspec.Meta(max_length=MAX_ELIGIBILITY_CODES)]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class ProtectedAreasRuleOverride(_RuleSwitch, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    scope: (
        Annotated[str, msgspec.Meta(pattern=r"^(all|natura2000|types)(?!\n)$", description="all, natura2000 or types")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    types: (
        Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=40)]], msgspec.Meta(max_length=32)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    buffer_m: BufferM | msgspec.UnsetType = msgspec.UNSET


class BufferRuleOverride(_RuleSwitch, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    buffer_m: BufferM | msgspec.UnsetType = msgspec.UNSET


class SlopeRuleOverride(_RuleSwitch, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    max_deg: Annotated[float, msgspec.Meta(gt=0, lt=90, description="degrees")] | msgspec.UnsetType = msgspec.UNSET


class ElevationRuleOverride(_RuleSwitch, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    min_m: Annotated[float, msgspec.Meta(ge=-500, le=9000)] | msgspec.UnsetType = msgspec.UNSET
    max_m: Annotated[float, msgspec.Meta(ge=-500, le=9000)] | msgspec.UnsetType = msgspec.UNSET


class MinAreaRuleOverride(_RuleSwitch, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    min_area_ha: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | msgspec.UnsetType = msgspec.UNSET


class EligibilityOverrides(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """`config.eligibility`: per-run changes to the technology's land-eligibility rule set (a rule left out
    keeps the file's values; `{"enabled": false}` switches a rule off)."""

    land_cover: LandCoverRuleOverride | None = None
    protected_areas: ProtectedAreasRuleOverride | None = None
    settlements: BufferRuleOverride | None = None
    water: BufferRuleOverride | None = None
    slope: SlopeRuleOverride | None = None
    elevation: ElevationRuleOverride | None = None
    min_area: MinAreaRuleOverride | None = None


class RunConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """`RunCreate.config`: what a run screens for. Every key is optional; null means the default."""

    capacity_mw: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0, le=100_000, description="installed capacity, MW; default: AOI area x the technology's density"
            ),
        ]
        | None
    ) = None
    buffer_km: (
        Annotated[
            float,
            msgspec.Meta(
                ge=0, le=50, description="zone of influence around the AOI, km; default AETHERA_DEFAULT_BUFFER_KM"
            ),
        ]
        | None
    ) = None
    lifetime_years: (
        Annotated[
            float,
            msgspec.Meta(ge=1, le=100, description="operating lifetime, years; default: the emission factor file's"),
        ]
        | None
    ) = None
    emission_factors: EmissionFactorOverrides | None = None
    eligibility: EligibilityOverrides | None = None
    reuse: (
        Annotated[
            bool,
            msgspec.Meta(
                description="false: compute afresh even when a COMPLETED run with the same content key exists; default true"
            ),
        ]
        | None
    ) = None


class RunCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /projects/{id}/runs`: exactly one of `aoi_geojson` and `aoi_path`; an unknown key
    is a 422 naming it (the frontend contract, ../shared/docs/api.md, sends only these)."""

    project_type: ProjectType
    aoi_geojson: dict[str, Any] | None = None
    aoi_path: AoiPath | None = None
    country: str | None = None
    config: RunConfig | None = None


class RunCreateResponse(msgspec.Struct, kw_only=True):
    """Answer (202) of `POST /projects/{id}/runs`."""

    task_id: str
    run_id: str
    status: RunStatus
    message: str
    reused_from: str | None = None  # set when the run completed at once with an identical run's results


class RunSummary(msgspec.Struct, kw_only=True):
    """One line of `GET /runs`."""

    run_id: str
    project_id: str | None
    project_type: str
    created_at: str
    status: RunStatus


class RunDetail(RunSummary, kw_only=True):
    """`GET /runs/{id}`: the summary, where its outputs are, and how the run went."""

    outputs: dict[str, dict[str, str]]
    task_id: str
    country: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    error: str | None = None
    error_code: str | None = None
    reused_from: str | None = None  # the COMPLETED run whose outputs this run reuses (same content key)
    batch_id: str | None = None


class Progress(msgspec.Struct, kw_only=True):
    """The last progress report of a running pipeline."""

    step: str
    percent: float
    message: str
    updated_at: str | None = None


class TaskStatus(msgspec.Struct, kw_only=True):
    """`GET /tasks/{id}` and the answer of `DELETE /tasks/{id}`."""

    task_id: str
    status: RunStatus
    project_id: str | None = None
    run_id: str | None = None
    progress: Progress | None = None
    error: str | None = None
    error_code: str | None = None
    attempts: int = 0
    max_attempts: int | None = None
    cancel_requested: bool = False
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    tenant: str = DEFAULT_TENANT  # the owner (the run's); another tenant's request sees 404


# --- stored records ------------------------------------------------------------------------------


class RunRecord(msgspec.Struct, kw_only=True):
    """`runs/{run_id}/run.json`: the durable truth about a run (Redis holds only copies and progress)."""

    run_id: str
    task_id: str
    project_id: str
    project_type: str  # as the client sent it (the frontend shows it back)
    # the validated run parameters (analysis.params.RunParams as plain data), so the worker runs
    # exactly what the API accepted, whatever settings it has itself
    params: dict[str, Any]
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    aoi_source: str  # "geojson" or "upload"
    aoi_path: str | None = None
    created_at: str
    updated_at: str
    status: RunStatus = RunStatus.PENDING
    attempts: int = 0  # attempts started so far (an attempt handed back by a stopping worker is not counted)
    # The fencing token: the attempt the run belongs to now. Only the job of this generation may start
    # the run, and every write of a worker carries the generation it started with, so a worker whose
    # attempt was superseded (lease lost, re-queued) can never write the record again.
    generation: int = 1
    # The generation whose outputs were committed with a final state (readers read only those); None for
    # runs stored before outputs had per-attempt prefixes, and for runs with nothing committed.
    output_generation: int | None = None
    job_id: str | None = None  # the queue's id of the job that carries the current attempt
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    error_code: str | None = None
    cancel_requested: bool = False
    idempotency_key_sha256: str | None = None
    tenant: str = DEFAULT_TENANT  # the project's owner; another tenant's request sees 404
    # hash of everything the results depend on (jobs/reuse.py); None for runs stored before reuse existed
    content_key: str | None = None
    # the COMPLETED run whose committed outputs were copied into this run's generation 1 (result reuse)
    reused_from: str | None = None
    batch_id: str | None = None  # the batch this run is a site of


class TaskRecord(TaskStatus, kw_only=True):
    """The service's own task record in Redis, rewritten whole on each change.

    It has exactly the fields of the `TaskStatus` answer, so `GET /tasks/{id}` serves the stored bytes
    as they are (the frontend polls it every few seconds per open run).
    """


class IdempotencyRecord(msgspec.Struct, kw_only=True):
    """Which run an `Idempotency-Key` of a project created (stored, so it survives Redis loss)."""

    project_id: str
    run_id: str
    created_at: str
    request_sha256: str | None = None  # the same key with another body is refused, not replayed


# --- batches -------------------------------------------------------------------------------------

SiteProperty = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class BatchCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /projects/{id}/batches`: many sites screened with one project type and config.

    Exactly one of `features` (an inline GeoJSON FeatureCollection) and `upload_id` (a GeoJSON
    FeatureCollection uploaded with `POST /uploads`)."""

    project_type: ProjectType
    features: dict[str, Any] | None = None
    upload_id: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)] | None = None
    country: str | None = None
    config: RunConfig | None = None
    name_property: SiteProperty = "name"  # the feature property naming each site; else its index
    on_invalid: Annotated[str, msgspec.Meta(pattern=r"^(reject|skip)(?!\n)$")] = "reject"


class InvalidSite(msgspec.Struct, kw_only=True):
    index: int  # the feature's position in the collection, from 0
    name: str
    reason: str


class BatchSite(msgspec.Struct, kw_only=True):
    index: int
    name: str
    run_id: str  # chosen before the run exists: the feeder creates it under this id, once
    area_ha: float  # of the AOI as validated (equal-area CRS)
    content_key: str | None = None  # the run's content key (jobs/reuse.py), computed at validation


class BatchRecord(msgspec.Struct, kw_only=True):
    """`batches/{batch_id}/batch.json`: a batch and the run of each of its sites (written by the API)."""

    batch_id: str
    project_id: str
    tenant: str = DEFAULT_TENANT
    project_type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    params: dict[str, Any] = msgspec.field(default_factory=dict)  # every site's validated run params
    reuse: bool = True  # config.reuse
    name_property: str = "name"
    created_at: str
    sites: list[BatchSite] = msgspec.field(default_factory=list)
    invalid: list[InvalidSite] = msgspec.field(default_factory=list)
    cancel_requested: bool = False


class BatchCreated(msgspec.Struct, kw_only=True):
    """Answer (202) of `POST /projects/{id}/batches`."""

    batch_id: str
    project_id: str
    sites: int  # valid sites: each gets a run, created in the background by the batch feeder
    invalid: list[InvalidSite]  # skipped (on_invalid: skip); with reject the request is a 422 listing them


class BatchStatus(msgspec.Struct, kw_only=True):
    """`GET /batches/{id}` and the answer of `DELETE /batches/{id}`."""

    batch_id: str
    project_id: str
    created_at: str
    total: int
    created: int  # sites whose run exists (the feeder creates them in chunks); the others count as PENDING
    counts: dict[str, int]  # runs by status (PENDING, PROCESSING, COMPLETED, FAILED, REVOKED)
    finished: int
    reused: int  # of the created runs, those that completed at once with an identical run's results
    progress_pct: float
    done: bool
    cancel_requested: bool
    invalid: list[InvalidSite]
