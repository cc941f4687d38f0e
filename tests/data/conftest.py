"""Fixtures of the data tests: one sample region per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sample_catalog_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aethera.data.sample import generate_sample_data

    return generate_sample_data(tmp_path_factory.mktemp("sample-data"), seed=42)
