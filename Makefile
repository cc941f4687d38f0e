# Two commands on a fresh machine: `make run` and `make test`. Everything else is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-under-load bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/aethera dev

# the suite in parallel: most tests wait on child processes (Redis, the API, workers), so more pytest
# workers than cores pays; each worker has its own Redis, S3 server and ports (docs/development.md)
TEST_WORKERS ?= 4
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# the proof that no test depends on timing: the whole suite three times in a row while every core is
# kept busy by another process
test-under-load: install
	$(BIN)/python tests/tools/burn.py -- sh -c 'for i in 1 2 3; do echo "== pass $$i of 3 under load"; \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) -q || exit 1; done'

bench: install
	@set -e; for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
