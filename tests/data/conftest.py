"""Fixtures of the data tests: one sample region per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_catalog_path(sample_data: Path) -> Path:
    return sample_data
