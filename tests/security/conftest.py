"""The security tests reuse the API tests' service kit (a real app on the test Redis and storage)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any


def _load_kit() -> Any:
    # the same single module object tests/api/conftest.py loads (neither folder is a package)
    if "servicekit" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "api" / "servicekit.py"
        spec = importlib.util.spec_from_file_location("servicekit", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["servicekit"] = module
        spec.loader.exec_module(module)
    return sys.modules["servicekit"]


kit = _load_kit()
sample_catalog = kit.sample_catalog
redis_db = kit.redis_db
make_service = kit.make_service
