"""The systemd units: `systemd-analyze verify` passes, the worker template instantiates, hardening is set."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_BIN = "/opt/aethera/.venv/bin/aethera"  # where the units expect the install (README)
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _local_copy(tmp_path: Path, name: str, as_name: str | None = None) -> Path:
    """The unit with the install prefix pointed at this checkout's `aethera`: verify checks that the
    ExecStart binary exists, and the test machine has no /opt/aethera. Nothing else is changed."""
    local_bin = Path(sys.executable).parent / "aethera"
    assert local_bin.exists(), "the aethera console script is not installed in the venv"
    text = (UNITS / name).read_text()
    assert INSTALLED_BIN in text
    out = tmp_path / (as_name or name)
    out.write_text(text.replace(INSTALLED_BIN, str(local_bin)))
    return out


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, cwd=unit.parent
    )


def _problems(result: subprocess.CompletedProcess[str], unit: Path) -> list[str]:
    # verify exits 0 on unknown keys but prints them; any line about our unit is a failure
    stem = unit.name.split("@")[0]
    return [line for line in (result.stdout + result.stderr).splitlines() if stem in line]


@needs_analyze
@pytest.mark.parametrize(
    ("name", "as_name"),
    [
        ("aethera-api.service", None),
        ("aethera-worker@.service", None),
        ("aethera-worker@.service", "aethera-worker@3.service"),
    ],
)
def test_systemd_analyze_verify(tmp_path: Path, name: str, as_name: str | None) -> None:
    unit = _local_copy(tmp_path, name, as_name)
    result = _verify(unit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _problems(result, unit) == []


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # the check above can fail: a typo in a directive is reported
    unit = _local_copy(tmp_path, "aethera-api.service")
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    assert _problems(_verify(unit), unit)


@needs_analyze
@pytest.mark.parametrize("name", ["aethera-api.service", "aethera-worker@.service"])
def test_exposure_is_low(tmp_path: Path, name: str) -> None:
    unit = _local_copy(tmp_path, name)
    # threshold 20 = exposure 2.0 of 10 (systemd calls up to 4.9 "OK")
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def _service_section(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    # repeated keys (SystemCallFilter=) are legal in units: read them all
    section = None
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", ["aethera-api.service", "aethera-worker@.service"])
def test_hardening_and_restart_policy(name: str) -> None:
    s = _service_section(name)
    assert s["User"] == ["aethera"] and s["Group"] == ["aethera"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["PrivateTmp"] == ["yes"]
    assert s["ReadWritePaths"] == ["/var/lib/aethera"]
    assert s["Restart"] == ["on-failure"]
    assert s["EnvironmentFile"] == ["/etc/aethera/aethera.env"]
    assert s["KillSignal"] == ["SIGTERM"]
    # the stop timeout leaves the service its whole grace period (example env: 30 s) and then some
    grace = next(
        float(line.split("=", 1)[1])
        for line in (UNITS / "aethera.env.example").read_text().splitlines()
        if line.startswith("AETHERA_SHUTDOWN_GRACE_S=")
    )
    assert float(s["TimeoutStopSec"][0]) > grace


def test_env_example_names_only_known_settings() -> None:
    from aethera.settings import ENV_VARIABLES

    names = set()
    for line in (UNITS / "aethera.env.example").read_text().splitlines():
        line = line.strip().lstrip("# ").strip()
        if "=" in line and line.split("=", 1)[0].isupper():
            names.add(line.split("=", 1)[0])
    assert names, "no variables in the example"
    assert names <= set(ENV_VARIABLES), sorted(names - set(ENV_VARIABLES))


@pytest.mark.parametrize("name", ["aethera-api.service", "aethera-worker@.service"])
def test_memory_and_task_limits(name: str) -> None:
    # a hostile client or a runaway run degrades one service, not the machine
    s = _service_section(name)
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    memory_max = s["MemoryMax"][0]
    assert memory_max[-1] in units and 0 < int(memory_max[:-1]) * units[memory_max[-1]] <= 8 * 1024**3, memory_max
    assert 0 < int(s["TasksMax"][0]) <= 4096, s["TasksMax"]
    if "MemoryHigh" in s:
        high = s["MemoryHigh"][0]
        assert int(high[:-1]) * units[high[-1]] < int(memory_max[:-1]) * units[memory_max[-1]]
