# Targets a user can guess: demo, ui, test, bench, lint, workers. Each creates the venv on first use.
# The venv is installed from constraints.txt (the locked development environment); make lock
# refreshes it, make test-latest runs the suite against the newest releases in .venv-latest.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV = $(BIN)/uv --no-progress pip install --quiet --python $(BIN)/python
PARTITION ?= 2026-11-01
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# Broker and result backend of the Celery workers and of LLM_ASSETS_EXECUTOR=celery runs.
export LLM_ASSETS_CELERY_BROKER ?= redis://127.0.0.1:6379/0
export LLM_ASSETS_CELERY_BACKEND ?= redis://127.0.0.1:6379/1
WORKER_NAME ?= worker1
WORKER_CONCURRENCY ?= 2

LOCK := constraints.txt
LATEST := .venv-latest

.PHONY: install demo ui test test-latest lock bench lint docs clean services workers

# uv installs the locked environment (resolving, downloading and unpacking in parallel: about
# 17 s where pip took 50-100 s) and compiles the bytecode once, so no process compiles it again.
$(BIN)/.installed: pyproject.toml examples/reviews/pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(LOCK) uv
	$(UV) --compile-bytecode -c $(LOCK) -e '.[dev]'
	$(UV) --compile-bytecode --no-deps -e examples/reviews
	$(COMPILE_SOURCES)
	touch $@

# The project's own sources are installed editable, so uv compiles none of them: compiled here
# once, every process of the suite reads them (where PYTHONDONTWRITEBYTECODE is set, nothing
# else would write them, and each process would compile every module it imports again).
COMPILE_SOURCES = $(BIN)/python -m compileall -q llm_assets resources sensors examples tests tools bench >/dev/null

# The newest releases pyproject.toml allows, in a venv of their own.
$(LATEST)/bin/.installed: pyproject.toml
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(LATEST)/bin/uv pip install --quiet --python $(LATEST)/bin/python --compile-bytecode -e '.[dev]'
	$(LATEST)/bin/uv pip install --quiet --python $(LATEST)/bin/python --compile-bytecode --no-deps -e examples/reviews
	touch $@

# The suite against the newest releases; first names what differs from the lock.
test-latest: services
	rm -f $(LATEST)/bin/.installed
	$(MAKE) $(LATEST)/bin/.installed
	$(LATEST)/bin/pip freeze --all --exclude-editable | grep -iv '^pip==' > $(LATEST)/freeze.txt
	$(LATEST)/bin/python tools/lock_diff.py $(LOCK) $(LATEST)/freeze.txt
	$(LATEST)/bin/python -m pytest -q

# Moves the lock to the newest releases (run make test-latest first).
lock:
	rm -f $(LATEST)/bin/.installed
	$(MAKE) $(LATEST)/bin/.installed
	head -3 $(LOCK) > $(LOCK).new
	$(LATEST)/bin/pip freeze --all --exclude-editable | grep -iv '^llm-assets\|^pip==' >> $(LOCK).new
	mv $(LOCK).new $(LOCK)

install: $(BIN)/.installed

# The demo is the reviews example (examples/reviews); ui serves it with the library's launcher.
demo: install
	$(BIN)/python -m reviews_example demo --partition $(PARTITION)

ui: install
	$(BIN)/python -m llm_assets ui -w workspace.yaml

# Services the tests use: Redis is started here when it is down (the Celery tests skip without
# it); PostgreSQL is expected on 127.0.0.1:5432 (its tests skip without it).
services:
	@tools/redis.sh || echo "Redis unavailable: the Celery tests will skip" >&2

# Independent tests in parallel processes (tests that share a server or an expensive fixture run
# in one of them: tests/conftest.py). TEST_WORKERS processes at once (more cost each a start-up).
TEST_WORKERS ?= 4
test: install services
	$(COMPILE_SOURCES)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25

# One dagster-celery worker in the foreground (Ctrl-C stops it) taking the steps of runs launched
# with LLM_ASSETS_EXECUTOR=celery. Start one per machine, each with its own WORKER_NAME; see
# "Running on more than one machine" in the README.
workers: install services
	mkdir -p "$(DAGSTER_HOME)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dagster-celery worker start -A dagster_celery.app \
		-y celery.yaml -n $(WORKER_NAME) -- -c $(WORKER_CONCURRENCY)

bench: install services
	$(BIN)/python -m bench

# mypy checks the namespace as installed (llm_assets.resources, llm_assets.sensors): see the script.
lint: install
	$(BIN)/ruff check .
	MYPY=$(BIN)/mypy tools/typecheck.sh
	MYPY=$(BIN)/mypy tools/typecheck.sh "$(CURDIR)/examples/reviews/reviews_example"

# The documentation site (mkdocs.yml, docs/) into site/; any warning fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf .dagster_home data
