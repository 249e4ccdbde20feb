# The two commands of the quickstart (`make run`, `make test`) do all their own set-up:
# uv is bootstrapped into .tools/ when it is not on PATH, the project goes into .venv/.

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv/bin
PORT ?= 8000
HOST ?= 127.0.0.1
BENCH_ARGS ?=
# Demo data for `make run`: the default coupon data set and a catalog with a year of orders
# (seeded once, kept afterwards).
SEED_ARGS ?= --users 1000000 --coupons 5000 --usage 3000 --sellers 200 --products 20000 --orders 200000

.PHONY: install run test lint format bench clean

.tools/bin/uv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "peakshop needs Python 3.11 or newer")'
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --quiet

run: install
	$(VENV)/peakshop db upgrade
	$(VENV)/peakshop seed --if-empty $(SEED_ARGS)
	@echo
	@echo "  admin token:   $${PEAKSHOP_ADMIN_TOKEN:-dev-admin-token}"
	@echo "  service token: $${PEAKSHOP_SERVICE_TOKEN:-dev-service-token}"
	@echo "  API docs:      http://$(HOST):$(PORT)/schema/swagger"
	@echo
	$(VENV)/peakshop serve --host $(HOST) --port $(PORT)

lint: install
	$(VENV)/ruff check src tests benchmarks migrations
	$(VENV)/ruff format --check src tests benchmarks migrations
	$(VENV)/mypy

test: lint
	$(VENV)/pytest

format: install
	$(VENV)/ruff check --fix src tests benchmarks migrations
	$(VENV)/ruff format src tests benchmarks migrations

# Every measurement behind the README's performance tables, then the tables rewritten from the
# JSON results (about an hour on 2 cores; an idle machine). Scaled-mode steps need
# BENCH_POSTGRES_URL and BENCH_REDIS_URL. E.g. BENCH_ARGS="--only validate",
# "--skip catalog", "--readme-only".
bench: install
	$(VENV)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache peakshop.db peakshop.db-* peakshop.logs.db peakshop.logs.db-* var
