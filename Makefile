# Two commands do everything on a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
FLASK := $(VENV)/bin/flask --app wsgi
PG_URL := postgresql://workflows:workflows@127.0.0.1:5432/workflows_test

.PHONY: setup setup-test run migrate test test-sqlite test-postgres bench clean

setup:
	@bash scripts/setup.sh main

setup-test:
	@bash scripts/setup.sh test

migrate: setup
	@$(FLASK) db upgrade >var/migrate.log 2>&1 || { cat var/migrate.log; exit 1; }

run: migrate
	@$(FLASK) first-start-hint
	@exec $(VENV)/bin/python scripts/supervise.py

test: setup-test
	@bash scripts/test.sh

test-sqlite: setup-test
	@bash scripts/test.sh sqlite

test-postgres: setup-test
	@bash scripts/test.sh postgres

bench: setup-test
	@for b in dispatch logs live schedule pages; do echo "== bench/$$b.py"; $(VENV)/bin/python bench/$$b.py || exit 1; done

clean:
	rm -rf var/*.sqlite* .pytest_cache
