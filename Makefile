# Two commands a user needs: `make demo` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install demo test lint fmt bench clean system-packages
.PHONY: unleash unleash-stop

UNLEASH := scripts/unleash/unleash.sh

install: $(VENV)/.installed node_modules/.diachronic-installed system-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# npm packages pinned in package-lock.json: unleash-server (make unleash, the tests' Unleash), and prism with GitHub's
# OpenAPI description, which the tests use to check every request to GitHub's API (tests/github_api.py).
node_modules/.diachronic-installed: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests drive, as <binary>=<package>: Chromium for the dashboard's browser tests (Playwright's
# own browser download cannot work here) and nginx, the TLS-terminating proxy (mTLS, API key) the TLS tests put in
# front of Temporal and Unleash (tests/tls_fixtures.py). Installed once, as root or with sudo; when every binary
# exists this costs nothing.
SYSTEM_PACKAGES := /usr/bin/chromium=chromium /usr/sbin/nginx=nginx-light
system-packages:
	@missing=; for pair in $(SYSTEM_PACKAGES); do test -x "$${pair%%=*}" || missing="$$missing $${pair#*=}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

demo: install
	$(BIN)/python -m examples.demo

# The tests run against a real Unleash of their own: fresh, private to this run, removed afterwards (also on failure).
test: install lint
	DIACHRONIC_TEST_UNLEASH=required $(UNLEASH) run $(BIN)/pytest -q --durations=25

lint: install
	$(BIN)/ruff check src tests examples bench
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format src tests examples bench
	$(BIN)/ruff check --fix src tests examples bench

bench: install
	$(BIN)/python bench/migration.py
	$(BIN)/python bench/signaler.py

# The migration at production scale (docs/benchmarks.md): each size on a fresh in-memory dev server, then N = 2000
# on a dev server with a database file, signals sent with the workers stopped (the CI's own rate against Temporal's
# batch signal). It takes more than an hour: run it on a quiet machine.
.PHONY: bench-scale
SCALE_SIZES ?= 2000,10000,50000,100000
bench-scale: install
	$(BIN)/python bench/scale.py --sizes $(SCALE_SIZES)
	$(BIN)/python bench/scale.py --sizes 2000 --db-file --signals-alone

clean:
	-@$(UNLEASH) stop
	rm -rf $(VENV) .diachronic .pytest_cache .mypy_cache .ruff_cache

# A local Unleash 7.5.1 on PostgreSQL 15 (installed if missing). Use it with: eval "$$(make -s unleash)"
unleash:
	@$(UNLEASH) start

unleash-stop:
	@$(UNLEASH) stop

# The explorer (docs/safety.md): stories drawn from SEED, played for BUDGET wall seconds on the real CI workflows in
# virtual time (MODEL=1: on the model of the CI, the planner alone) and judged against the safety invariants after
# every step; each counter-example is shrunk and printed as a catalog scenario; ends with
# "N sequences, M steps, K violations" and exits 1 on a violation.
.PHONY: explore
SEED ?= 0
BUDGET ?= 600
MODEL ?=
explore: install
	$(BIN)/diachronic explore --seed $(SEED) --budget $(BUDGET) $(if $(MODEL),--model)

# The fault-injection suite (tests/reliability, docs/reliability.md) with a few hundred old workflows per test and
# 30 s outages; `make test` runs the same tests with 40 and short outages. Writes .diachronic/reliability.json.
.PHONY: chaos
CHAOS_WORKFLOWS ?= 300
chaos: install
	DIACHRONIC_TEST_UNLEASH=required DIACHRONIC_CHAOS_WORKFLOWS=$(CHAOS_WORKFLOWS) $(BIN)/pytest -q tests/reliability
	$(BIN)/python -m tests.reliability.report
