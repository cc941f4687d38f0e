"""The service's worker (`run_worker()`), made to stop at one boundary of a run attempt.

`AETHERA_TEST_PAUSE_AT` names the boundary; when a run reaches it the worker creates the file
`$AETHERA_TEST_PAUSE_DIR/paused-<boundary>` and then holds still (its event loop blocked, as a process
that is frozen or about to be killed) until the file `$AETHERA_TEST_PAUSE_DIR/go` exists. A test
SIGKILLs it there, or cuts a dependency and then lets it go on. Boundaries:

- `pickup`: the queue handed the job over and the lease is taken; the record still says PENDING.
- `commit`: every output of the attempt is stored; the record still says PROCESSING.
- `copy`: the final state is committed to storage; its Redis copy is not written yet.

Nothing else differs from `worker.py`. `AETHERA_TEST_STEP_DELAY_S` slows the pipeline as
`slow_worker.py` does (for "mid-step").
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def _hold(boundary: str) -> None:
    directory = Path(os.environ["AETHERA_TEST_PAUSE_DIR"])
    (directory / f"paused-{boundary}").write_text(str(os.getpid()))
    while not (directory / "go").exists():
        time.sleep(0.02)


def _patch() -> None:
    from aethera.jobs import records, tasks

    boundary = os.environ.get("AETHERA_TEST_PAUSE_AT", "")
    if boundary == "pickup":
        original_acquire = records.acquire_lease

        async def acquire(*args: Any, **kwargs: Any) -> bool:
            taken = await original_acquire(*args, **kwargs)
            if taken:
                _hold("pickup")
            return taken

        records.acquire_lease = acquire  # type: ignore[assignment]
    elif boundary == "commit":
        original_finish = tasks._Attempt._finish

        async def finish(self: Any, status: Any, *args: Any, **kwargs: Any) -> str:
            if status.value == "COMPLETED":
                _hold("commit")
            return await original_finish(self, status, *args, **kwargs)

        tasks._Attempt._finish = finish  # type: ignore[method-assign]
    elif boundary == "copy":
        original_publish = records.publish_task

        async def publish(redis: Any, run: Any, *args: Any, **kwargs: Any) -> bool:
            if run.status.is_final:
                _hold("copy")
            return await original_publish(redis, run, *args, **kwargs)

        records.publish_task = publish  # type: ignore[assignment]


if __name__ == "__main__":
    from aethera.jobs.worker import run_worker

    _patch()
    sys.exit(run_worker())
else:
    # the pipeline's child processes import this script as "__mp_main__": they run the slowed pipeline
    import slow_worker  # noqa: F401 - importing it slows the pipeline by AETHERA_TEST_STEP_DELAY_S
