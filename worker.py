"""Entry point of one worker process: `python worker.py` (the same as `aethera worker`)."""

import sys

from aethera.jobs.worker import run_worker

if __name__ == "__main__":
    sys.exit(run_worker())
