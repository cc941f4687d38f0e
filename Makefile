# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Locked dependencies, every file pinned by hash (see docs/operations.md#dependencies):
#   dev.lock.txt     runtime + dev (embedded Redis) + test + lint: what `make run`/`make test`/`make check` use
#   runtime.lock.txt runtime only: a production install
LOCK_DEV     := requirements/dev.lock.txt
LOCK_RUNTIME := requirements/runtime.lock.txt
# uv resolves the locks; only `make lock` needs it, and installs this version into the venv itself
UV_VERSION   := 0.13.9
UV_COMPILE   = $(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
               --generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

.PHONY: install run test test-under-load check lock bench clean

$(STAMP): pyproject.toml $(LOCK_DEV)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK_DEV)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/aethera dev

# the suite in parallel: most tests wait on child processes (Redis, the API, workers), so more pytest
# workers than cores pays; each worker has its own Redis, S3 server and ports (docs/development.md)
TEST_WORKERS ?= 4
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# the proof that no test depends on timing: the whole suite three times in a row while every core is
# kept busy by another process
test-under-load: install
	$(BIN)/python tests/tools/burn.py -- sh -c 'for i in 1 2 3; do echo "== pass $$i of 3 under load"; \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal -q || exit 1; done'

# Static checks CI runs before the tests: lint, format, strict types (config in pyproject.toml)
check: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# Re-resolve both locks from pyproject.toml after a dependency changed there: pins already in a lock are kept
# when pyproject still allows them (`make lock UPGRADE=1` moves everything to the newest allowed). The runtime
# lock is held to the dev lock's versions, so production runs what the tests ran.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(UV_COMPILE) --extra dev --extra test --extra lint -o $(LOCK_DEV)
	$(UV_COMPILE) --constraint $(LOCK_DEV) -o $(LOCK_RUNTIME)

bench: install
	@set -e; for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .mypy_cache .ruff_cache
