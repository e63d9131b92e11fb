# cvc-sync: every target sets up what it needs (.venv, pinned by constraints.txt) and runs from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EMULATOR_PORT ?= 8765
# Documented demo keys for `make emulator` and `make demo`: never valid anywhere but on this machine.
DEMO_KEY ?= demo-key:demo-secret-not-for-production

.PHONY: help install test lint emulator bench demo clean

help:
	@echo "make demo      the upload function end to end: emulator + moto (S3, SQS) on loopback, three exports"
	@echo "make test      run every test (starts what the tests need)"
	@echo "make lint      ruff + mypy"
	@echo "make emulator  run the CVC emulator on 127.0.0.1:$(EMULATOR_PORT) with the demo key"
	@echo "make bench     benchmarks: client and sync vs the official SDK, planning vs csv.reader"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check shared functions tests bench
	$(BIN)/ruff format --check shared functions tests bench
	$(BIN)/mypy

emulator: $(STAMP)
	$(BIN)/cvcsync emulator --host 127.0.0.1 --port $(EMULATOR_PORT) --access-key $(DEMO_KEY) --admin

bench: $(STAMP)
	$(BIN)/python bench/bench_client.py
	$(BIN)/python bench/bench_readers.py
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_queue.py

demo: $(STAMP)
	$(BIN)/python -m cvcsync.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
