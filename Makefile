# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The locks: every package pinned with its hashes, resolved from pyproject.toml by `make lock`.
# lock.txt is runtime + embedded + dev (make install, CI); runtime.txt is the Dockerfile's subset.
LOCK := requirements/lock.txt
RUNTIME_LOCK := requirements/runtime.txt
# The lock is made for the platform we run on and ship (Linux x86_64, CPython 3.11).
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock"
# Tests use this machine's PostgreSQL and Redis (started by .ci/run when they are not running).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install lock run test test-long test-sqlite lint typecheck bench bench-history clean

# Dependencies only from the lock (hash-checked); then the project itself, editable, adding nothing.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## lock: re-resolve the locks from pyproject.toml (after adding or changing a dependency; commit both).
## Pins already in the lock are kept where they still fit; `make lock UPGRADE=--upgrade` takes the newest.
lock: $(STAMP)
	$(UV_COMPILE) $(UPGRADE) --extra dev --extra embedded -o $(LOCK)
	$(UV_COMPILE) -c $(LOCK) -o $(RUNTIME_LOCK)

## run: the main job (worker + scheduler + web UI) on SQLite and a private Redis, under ./var
run: $(STAMP)
	$(BIN)/syndicator run

## test: the whole suite on PostgreSQL + Redis, then the pipeline tests on the SQLite default,
## then, on its own and last, the fault test that stops this machine's PostgreSQL for a few seconds
test: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-faketime
	scripts/ensure-php
	scripts/ensure-nft
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m "not long and not faults_pg_stop"
	TEST_BROKER_URL=$(TEST_BROKER_URL) SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-sqlite \
		$(BIN)/pytest -m "not long" tests/test_pipeline.py
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m "faults_pg_stop and not long"

## test-long: everything, including the full-size load runs (the PostgreSQL stop last, on its own)
test-long: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-faketime
	scripts/ensure-php
	scripts/ensure-nft
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m "not faults_pg_stop"
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m faults_pg_stop

## lint: ruff (rules and format), then mypy as `make typecheck` runs it; CI (.ci/run) runs this
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## typecheck: mypy with django-stubs over syndicator/ and tasks/ ([tool.mypy] in pyproject.toml)
typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

## bench-history: the pages read every day, timed on a year of a newsroom (PostgreSQL, bench/history.py)
bench-history: $(STAMP)
	$(BIN)/python bench/history.py

clean:
	rm -rf $(VENV) var
