# cvc-sync: every target sets up what it needs (.venv, pinned by constraints.txt) and runs from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EMULATOR_PORT ?= 8765
# Documented demo keys for `make emulator` and `make demo`: never valid anywhere but on this machine.
DEMO_KEY ?= demo-key:demo-secret-not-for-production

.PHONY: help install test lint chaos emulator bench demo clean package deploy-fc deploy-aws

help:
	@echo "make demo      the upload function end to end: emulator + moto (S3, SQS) on loopback, three exports"
	@echo "make test      run every test (starts what the tests need)"
	@echo "make lint      ruff + mypy + bandit + pip-audit (skipped, loudly, when its database is unreachable)"
	@echo "make chaos     the chaos suite at 100k users (faults, kills, queue redelivery, bad exports)"
	@echo "make emulator  run the CVC emulator on 127.0.0.1:$(EMULATOR_PORT) with the demo key"
	@echo "make bench     every benchmark and the chaos suite, then bench/RESULTS.md side by side"
	@echo "make package   build dist/fc and dist/lambda: layer.zip and one zip per function (docs/deploy.md)"
	@echo "make deploy-fc / deploy-aws   deploy with the cloud's CLI; says what is missing first (docs/deploy.md)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check shared functions tests bench deploy
	$(BIN)/ruff format --check shared functions tests bench deploy
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r shared functions deploy
	$(BIN)/python deploy/audit.py

# The chaos suite at full size (make test runs it at 10k users); results to bench/results/chaos.json.
CHAOS_USERS ?= 100000
chaos: $(STAMP)
	CVCSYNC_CHAOS_USERS=$(CHAOS_USERS) CVCSYNC_CHAOS_RESULTS=bench/results/chaos.json \
		$(BIN)/python -m pytest tests/chaos -p no:cacheprovider -o timeout=3600 -q

# Prints its URL, then the `export` lines that point `cvcsync` in another shell at it (README: "Your first sync").
emulator: $(STAMP)
	@$(BIN)/cvcsync emulator --host 127.0.0.1 --port $(EMULATOR_PORT) --access-key $(DEMO_KEY) --admin

bench: $(STAMP)
	$(BIN)/python bench/bench_client.py
	$(BIN)/python bench/bench_readers.py
	$(BIN)/python bench/bench_columnar.py
	$(BIN)/python bench/bench_sync.py
	$(BIN)/python bench/bench_concurrency.py
	$(BIN)/python bench/bench_queue.py
	$(BIN)/python bench/bench_scim.py
	$(BIN)/python bench/bench_cold_start.py
	$(MAKE) chaos
	$(BIN)/python bench/bench_security.py
	$(BIN)/python bench/report.py

demo: $(STAMP)
	$(BIN)/python -m cvcsync_dev.demo

# Deployment (docs/deploy.md). Never run in CI. Example:
#   make deploy-aws STACK=cvc-sync ARTIFACT_BUCKET=my-artefacts REGION=eu-west-1 \
#     PARAMS='UploadBucketName=my-hr-exports CvcAccessKeyId=... CvcAccessKeySecret=...'
STACK ?=
ARTIFACT_BUCKET ?=
REGION ?=
PARAMS ?=
DEPLOY_ARGS = --stack '$(STACK)' --artifact-bucket '$(ARTIFACT_BUCKET)' --region '$(REGION)' $(foreach p,$(PARAMS),--param '$(p)')

# Packaging needs pip and the standard library only (tomli on Python 3.10, to read pyproject.toml): a venv of its own
# inside $(VENV) (so `make clean` removes it too), not the development tools. The build itself runs pip for the
# target platform, whatever this venv's Python is.
PACKAGE_VENV := $(VENV)/package
PACKAGE_STAMP := $(PACKAGE_VENV)/.installed

$(PACKAGE_STAMP): constraints.txt
	test -x $(PACKAGE_VENV)/bin/python || $(PYTHON) -m venv $(PACKAGE_VENV)
	$(PACKAGE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PACKAGE_VENV)/bin/python -m pip install --quiet -c constraints.txt 'tomli; python_version < "3.11"'
	touch $(PACKAGE_STAMP)

package: $(PACKAGE_STAMP)
	$(PACKAGE_VENV)/bin/python deploy/package.py

deploy-fc: $(STAMP)
	$(BIN)/python deploy/deploy.py fc $(DEPLOY_ARGS)

deploy-aws: $(STAMP)
	$(BIN)/python deploy/deploy.py aws $(DEPLOY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
