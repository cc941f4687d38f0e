"""Keep every core busy while something else runs: the load under which the suite must still pass.

    python tests/tools/burn.py -- python -m pytest -n 4      # burns until the command ends, exits with its status
    python tests/tools/burn.py --seconds 600                  # burns for a while on its own

One busy-looping process per core (`--cores` overrides it), at normal priority, so it competes with the
suite the way other engineers' work on a shared machine does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _spin() -> None:
    # pure-Python arithmetic: holds a core without touching memory or disk
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="busy processes to start")
    parser.add_argument("--seconds", type=float, default=None, help="burn this long when no command is given")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run under load")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command and args.seconds is None:
        parser.error("give a command after -- or --seconds")

    burners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.cores)]
    for b in burners:
        b.start()
    print(f"burn: {args.cores} busy processes started", file=sys.stderr, flush=True)
    try:
        if command:
            return subprocess.call(command)
        time.sleep(args.seconds)
        return 0
    finally:
        for b in burners:
            b.terminate()
        for b in burners:
            b.join()


if __name__ == "__main__":
    sys.exit(main())
