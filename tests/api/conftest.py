"""Fixtures of the API tests; they live in tests/servicekit.py, shared with tests/jobs."""

from __future__ import annotations

import servicekit as kit  # tests/servicekit.py (tests/ is on sys.path: the root conftest lives there)

sample_catalog = kit.sample_catalog
redis_db = kit.redis_db
make_service = kit.make_service
