"""Fixtures of the jobs tests; they live in tests/api/servicekit.py, shared with tests/api."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any


def _load_kit() -> Any:
    # one module object for both test folders (neither is a package)
    if "servicekit" not in sys.modules:
        spec = importlib.util.spec_from_file_location("servicekit", Path(__file__).resolve().parents[1] / "api" / "servicekit.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["servicekit"] = module
        spec.loader.exec_module(module)
    return sys.modules["servicekit"]


kit = _load_kit()
sample_catalog = kit.sample_catalog
redis_db = kit.redis_db
make_service = kit.make_service
