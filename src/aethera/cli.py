"""The `aethera` command: serve, worker, dev, analyze, sample-data, datasets check, keys create,
migrate-listings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from aethera.errors import AetheraError


def _cmd_serve(args: argparse.Namespace) -> int:
    from aethera.api.app import serve
    from aethera.settings import load_settings

    return serve(load_settings())


def _cmd_worker(args: argparse.Namespace) -> int:
    from aethera.jobs.worker import run_worker
    from aethera.settings import load_settings

    return run_worker(load_settings())


def _cmd_dev(args: argparse.Namespace) -> int:
    from aethera.devserver import run_dev
    from aethera.settings import load_settings

    return run_dev(load_settings())


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    import msgspec

    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.params import RunParams
    from aethera.analysis.pipeline import run
    from aethera.analysis.results import document as results_document
    from aethera.data.catalog import load_catalog
    from aethera.data.gdal_io import configure_gdal, gdal_options
    from aethera.errors import InvalidInput
    from aethera.settings import load_settings

    settings = load_settings()
    path = Path(args.aoi_file)
    if not path.is_file():
        raise InvalidInput(f"AOI file {args.aoi_file!r} not found")
    features = _site_features(path, settings, required=args.sites is not None)
    if args.sites is None and features is not None and len(features) > 1:
        args.sites = "name"  # a file of many sites: each feature screened as its own site
    if args.sites is None:
        aoi = load_aoi(path.read_bytes(), filename=path.name, max_area_km2=settings.max_aoi_km2)
    config: dict[str, float] = {}
    if args.capacity_mw is not None:
        config["capacity_mw"] = args.capacity_mw
    if args.buffer_km is not None:
        config["buffer_km"] = args.buffer_km
    params = RunParams.from_request(args.project_type, args.country, config, settings)
    configure_gdal(gdal_options(settings))
    catalog = load_catalog(args.datasets or settings.datasets)
    tty = sys.stderr.isatty()

    def progress(step: str, percent: float, message: str) -> None:
        # A bar redrawn in place on a terminal; one line per step when stderr is a file or pipe.
        filled = int(percent / 100 * 30)
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {percent:5.1f}%  {step}: {message}"
        print(("\r\033[K" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    if args.sites is not None and features is not None:
        return _analyze_sites(features, args.sites, params, catalog, settings, progress)
    output = run(aoi, params, catalog, progress, lambda: False)
    if tty:
        print(file=sys.stderr)
    document = results_document(output.results)
    document["legal"] = msgspec.to_builtins(output.legal) if output.legal is not None else None
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n")
    return 0


def _site_features(path: Any, settings: Any, *, required: bool) -> list[Any] | None:
    """Every feature of the file (GeoJSON FeatureCollection, GeoPackage, zipped Shapefile, KML) with the
    API's safeguards (`analysis.sites`); None when it is no file of sites and `required` is False (a
    single AOI: `load_aoi` then says what is wrong with it, if anything)."""
    from aethera.analysis.sites import read_sites
    from aethera.security.archives import ArchiveLimits

    try:
        return read_sites(
            path.read_bytes(),
            path.name,
            limits=ArchiveLimits.from_settings(settings),
            max_features=settings.batch_max_sites,
        )
    except Exception:  # a reader's own exception types too: as a single AOI, load_aoi says what is wrong
        if required:
            raise
        return None


def _analyze_sites(
    features: list[Any], name_property: str, params: Any, catalog: Any, settings: Any, progress: Any
) -> int:
    """Screen each feature as its own site; the batch summary as CSV on stdout (the columns and default
    order of `GET /batches/{id}/summary`)."""
    import msgspec

    from aethera import batch_summary
    from aethera.analysis.aoi import load_aoi
    from aethera.analysis.pipeline import run
    from aethera.analysis.sites import site_name
    from aethera.errors import AetheraError

    rows = []
    for i, feature in enumerate(features):
        name = site_name(feature, i, name_property)
        site = {"index": i, "name": name, "run_id": None, "area_ha": None}
        print(f"site {i + 1}/{len(features)}: {name}", file=sys.stderr, flush=True)
        try:
            aoi = load_aoi(msgspec.json.encode(feature), max_area_km2=settings.max_aoi_km2)
            site["area_ha"] = round(aoi.area_m2 / 1e4, 4)
            output = run(aoi, params, catalog, progress, lambda: False)
        except AetheraError as exc:  # one bad site is a row saying why, not the end of the screening
            rows.append(batch_summary.site_row(site, {"status": "FAILED", "error": exc.detail}, None, None))
            continue
        results = msgspec.to_builtins(output.results)
        legal = msgspec.to_builtins(output.legal) if output.legal is not None else None
        rows.append(batch_summary.site_row(site, {"status": "COMPLETED"}, results, legal))
    sys.stdout.write(batch_summary.to_csv(batch_summary.rank(rows, batch_summary.DEFAULT_SORT)))
    return 0


def _cmd_sample_data(args: argparse.Namespace) -> int:
    import time

    from aethera.data.sample import generate_sample_data

    started = time.perf_counter()
    catalog = generate_sample_data(args.directory, seed=args.seed)
    took = time.perf_counter() - started
    for f in sorted(catalog.parent.iterdir()):
        if f.is_file():
            print(f"  {f.name:24} {f.stat().st_size:>9,} bytes")
    print(f"synthetic sample region (seed {args.seed}) written in {took:.1f} s; catalog: {catalog}")
    return 0


def _cmd_datasets_check(args: argparse.Namespace) -> int:
    from aethera.data.catalog import check_catalog, load_catalog
    from aethera.data.gdal_io import configure_gdal, gdal_options
    from aethera.settings import load_settings

    settings = load_settings()
    configure_gdal(gdal_options(settings))
    path = args.file or settings.datasets
    catalog = load_catalog(path)
    print(f"catalog: {path}  ({catalog.title}{', SYNTHETIC' if catalog.synthetic else ''})")
    failed = False
    for r in check_catalog(catalog):
        need = "required" if r.required else "optional"
        if r.display == "(not configured)":
            print(f"- {r.layer:16} {need:8}  not configured")
            failed |= r.required
            continue
        state = "OK" if r.ok else ("FOUND, PROBLEMS" if r.found else "MISSING")
        sublayer = f" (layer {r.display.split(':', 1)[1]})" if ":" in r.display else ""
        print(f"- {r.layer:16} {need:8}  {state}: {r.path}{sublayer}")
        if r.found:
            size = f"{r.size[0]} x {r.size[1]} pixels" if r.size else "size unknown"
            count = f"{r.count:,} features" if r.format == "vector" else size
            if r.format == "raster" and r.resolution:
                count += f" at {r.resolution[0]:g} x {r.resolution[1]:g}"
            print(f"    format {r.format} ({r.driver}), CRS {r.crs}, {count}")
            if r.geometry_type:
                print(f"    geometry {r.geometry_type}")
            if r.bounds:
                print(f"    extent {', '.join(f'{v:.3f}' for v in r.bounds)} (layer CRS)")
            if r.bounds_wgs84:
                print(
                    f"    extent lon {r.bounds_wgs84[0]}..{r.bounds_wgs84[2]}, lat {r.bounds_wgs84[1]}..{r.bounds_wgs84[3]}"
                )
        for problem in r.problems:
            print(f"    problem: {problem}")
        failed |= r.required and not r.ok
    return 1 if failed else 0


def _cmd_keys_create(args: argparse.Namespace) -> int:
    from aethera.errors import ConfigError
    from aethera.security.apikeys import create_key
    from aethera.settings import load_settings

    path = args.file or load_settings().api_keys_file
    if not path:
        raise ConfigError("no keys file: pass --file FILE or set AETHERA_API_KEYS_FILE")
    key, entry = create_key(path, args.tenant, args.scope or None)
    # the key goes to stdout alone (so `KEY=$(aethera keys create ...)` works); everything else to stderr
    print(key)
    print(
        f"aethera: key {entry.key_id} for tenant {entry.tenant!r} (scopes: {', '.join(entry.scopes)}) "
        f"added to {path}; only its hash is stored, so copy the key now: it is not shown again",
        file=sys.stderr,
    )
    return 0


def _cmd_migrate_listings(args: argparse.Namespace) -> int:
    import asyncio

    import msgspec

    from aethera.jobs.listings import MigrationReport, migrate
    from aethera.settings import load_settings
    from aethera.storage.factory import open_storage

    async def go() -> MigrationReport:
        storage = await open_storage(load_settings())
        try:
            return await migrate(storage)
        finally:
            await storage.close()

    report = asyncio.run(go())
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aethera",
        description="Environmental screening of planned solar and wind projects.",
        epilog="Every setting comes from the environment (AETHERA_*, REDIS_URL, STORAGE_*, S3_*; docs/configuration.md "
        "lists them all). Production runs one `aethera serve` and any number of `aethera worker` processes "
        "(systemd units in deploy/systemd/); `aethera COMMAND --help` explains each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "serve",
        help="run the HTTP API",
        description="Run the REST API on AETHERA_HOST:AETHERA_PORT until SIGTERM or Ctrl-C. It needs REDIS_URL "
        "and the storage settings (STORAGE_BACKEND, STORAGE_BASE_PATH or S3_*), the same as every worker. "
        "Besides the API it serves /health (liveness), /ready (Redis, storage and a live worker), /metrics "
        "(Prometheus), /openapi.json and /docs (the API reference). Logs are JSON lines on stderr at "
        "AETHERA_LOG_LEVEL, each with its request id. On SIGTERM it stops accepting connections, lets "
        "requests and downloads in flight finish for AETHERA_SHUTDOWN_GRACE_S seconds, then closes its "
        "connections and exits. systemd: aethera-api.service.",
    )
    p.set_defaults(handler=_cmd_serve)

    p = sub.add_parser(
        "worker",
        help="run one worker process",
        description="Run one worker process that takes analysis runs from the queue in REDIS_URL and stores "
        "their results in the configured storage; it runs AETHERA_WORKER_CONCURRENCY runs at once. Start "
        "as many as the machines allow, on as many machines as needed, all pointing at one Redis and one "
        "bucket. Each sends a heartbeat that /ready and /metrics show. Logs are JSON lines on stderr, "
        "each with the run and task id. On SIGTERM it takes no new run, lets running ones finish for "
        "AETHERA_SHUTDOWN_GRACE_S seconds, hands any still running back to the queue (another worker "
        "runs it again), and exits. systemd: aethera-worker@N.service.",
    )
    p.set_defaults(handler=_cmd_worker)

    p = sub.add_parser(
        "dev",
        help="run API, one worker and an embedded Redis (what `make run` does)",
        description="Development launcher: creates sample data when missing, starts an embedded Redis when "
        "REDIS_URL is unset, one worker process and the API. Ctrl-C stops everything it started.",
    )
    p.set_defaults(handler=_cmd_dev)

    p = sub.add_parser(
        "analyze",
        help="screen one AOI file and print the results as JSON",
        description="Run the whole screening pipeline on an AOI file (GeoJSON, WKT, zipped Shapefile, "
        "GeoPackage, KML); results as JSON on stdout, progress on stderr.",
    )
    p.add_argument("aoi_file", help="path of the AOI file")
    p.add_argument("--project-type", required=True, help="solar or wind (solar_farm / wind_farm accepted)")
    p.add_argument("--country", default=None, help="ISO 3166-1 alpha-3 country code, e.g. DEU")
    p.add_argument("--capacity-mw", type=float, default=None, help="installed capacity (default from density)")
    p.add_argument(
        "--buffer-km", type=float, default=None, help="zone of influence, km (default AETHERA_DEFAULT_BUFFER_KM)"
    )
    p.add_argument("--datasets", default=None, help="dataset catalog file (default AETHERA_DATASETS)")
    p.add_argument(
        "--sites",
        nargs="?",
        const="name",
        default=None,
        metavar="NAME_PROPERTY",
        help="screen each feature of a GeoJSON FeatureCollection, GeoPackage, zipped Shapefile or KML "
        "as its own site and print the ranked summary as CSV (sites named by this property, default name, "
        "else their index); the default for a file of more than one feature",
    )
    p.set_defaults(handler=_cmd_analyze)

    p = sub.add_parser(
        "sample-data",
        help="write the synthetic demo region and its catalog",
        description="Write a deterministic synthetic region (EPSG:3035, Lusatia) and a catalog.toml into DIR.",
    )
    p.add_argument("directory", help="output directory")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same files)")
    p.set_defaults(handler=_cmd_sample_data)

    p = sub.add_parser(
        "datasets",
        help="inspect the dataset catalog",
        description="Inspect the dataset catalog (AETHERA_DATASETS): the layer files a deployment screens "
        "against. Run `aethera datasets check` on each worker machine after installing data.",
    )
    ds = p.add_subparsers(dest="datasets_command", required=True)
    c = ds.add_parser(
        "check",
        help="check every layer of a catalog",
        description="Print each layer: found, format, CRS, extent, count.",
    )
    c.add_argument("file", nargs="?", default=None, help="catalog file (default AETHERA_DATASETS)")
    c.set_defaults(handler=_cmd_datasets_check)

    p = sub.add_parser(
        "keys",
        help="manage API keys",
        description="Manage the API keys clients send as `Authorization: Bearer <key>`. Only salted hashes "
        "are stored, in AETHERA_API_KEYS_FILE.",
    )
    ks = p.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser(
        "create",
        help="create an API key for a tenant",
        description="Create a new API key bound to TENANT, print it once on stdout and store only its salted "
        "hash in the keys file (AETHERA_API_KEYS_FILE, or --file). Remove the key's entry from the file to "
        "revoke it; running servers notice within seconds.",
    )
    c.add_argument("--tenant", required=True, help="tenant the key acts for (a-z, 0-9, '-', '_')")
    c.add_argument(
        "--scope",
        action="append",
        choices=("read", "write", "admin"),
        help="repeatable; 'read' alone makes a read-only key; 'admin' alone a key for operator routes such as "
        "/metrics that reads no tenant data (default: read and write)",
    )
    c.add_argument("--file", default=None, help="keys file (default AETHERA_API_KEYS_FILE); created when missing")
    c.set_defaults(handler=_cmd_keys_create)

    p = sub.add_parser(
        "migrate-listings",
        help="index projects and runs stored before the per-tenant listing indexes",
        description="Write the listing-index markers (docs/architecture.md, 'Listings and their index') of "
        "every project and run in storage that lacks them, then the done marker. Idempotent and resumable; "
        "reads the whole bucket once. The API runs it by itself on its first listing when it was never "
        "done; run it again after the last instance of an older version has stopped. Prints what it did.",
    )
    p.set_defaults(handler=_cmd_migrate_listings)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except AetheraError as exc:
        print(f"aethera: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
