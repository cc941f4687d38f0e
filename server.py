"""Entry point of the HTTP API: `python server.py` (the same as `aethera serve`)."""

import sys

from aethera.api.app import serve

if __name__ == "__main__":
    sys.exit(serve())
