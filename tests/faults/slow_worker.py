"""The service's worker (`run_worker()`), with a pause after each pipeline progress report.

Fault tests use it to have a run reliably in the middle of its pipeline when they kill or cut
something; the pause is `AETHERA_TEST_STEP_DELAY_S` seconds. Nothing else differs from `worker.py`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def _slowed() -> None:
    from aethera.analysis import pipeline

    delay_s = float(os.environ.get("AETHERA_TEST_STEP_DELAY_S", "0"))
    original = pipeline.run

    def run(aoi: Any, params: Any, catalog: Any, progress: Any, is_cancelled: Any, on_output: Any = None) -> Any:
        def slow_progress(step: str, percent: float, message: str) -> None:
            progress(step, percent, message)
            time.sleep(delay_s)

        return original(aoi, params, catalog, slow_progress, is_cancelled, on_output=on_output)

    pipeline.run = run  # type: ignore[assignment]


if __name__ == "__main__":
    from aethera.jobs.worker import run_worker

    sys.exit(run_worker())
else:
    # the pipeline runs in child processes, which import the main script as "__mp_main__" before
    # they run: each of them runs the slowed pipeline
    _slowed()
