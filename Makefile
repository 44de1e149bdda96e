# energy-flows: every target sets itself up on a machine with only Python 3.11+ and make.
#   make lab         set up, then start JupyterLab on the lessons (Ctrl-C stops everything)
#   make test        set up, then lint, unit/integration tests and the notebook tests
#   make notebooks   re-execute every lesson with a fresh home and store its outputs
#   make screenshots regenerate the images in output/ (needs Debian's chromium)
#   make bench       run the benchmarks (plain Prefect vs the classroom set-up, as ratios)
#   make compat      the tests on another Prefect release (PREFECT=3.x.y)
#   make student     write the lessons without their solutions to student-edition/ (instructors)

PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
# Extra arguments for `energy-flows lab`, e.g. make lab LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lab test lint unit notebooks-test notebooks screenshots bench clean student compat

setup: $(STAMP)

# Re-install only when the package's metadata or the pinned versions change,
# so a second `make test` spends no time on installation.
# What both installers install: the package with its test extra, at the pinned versions.
INSTALL_ARGS = -c constraints.txt -e '.[test]'
# The installer: uv (the one on PATH, else one that pip puts in .venv/.uv/, outside the
# environment's packages) installs the ~200 pinned wheels in parallel, in a fraction of
# pip's time (docs/benchmarks.md); pip installs them where uv cannot (e.g. an index that
# only pip is configured for). INSTALLER=pip: pip alone.
INSTALLER ?= uv
UV = $(shell command -v uv 2>/dev/null || echo $(VENV)/.uv/bin/uv)
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is needed (python3 --version)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ "$(INSTALLER)" = uv ] && { test -x "$(UV)" || $(BIN)/python -m pip install --quiet \
	    --disable-pip-version-check --target $(VENV)/.uv uv; } \
	  && echo "$(UV) pip install $(INSTALL_ARGS)" \
	  && "$(UV)" pip install --quiet --python $(BIN)/python $(INSTALL_ARGS); then :; else \
	  echo "$(BIN)/python -m pip install $(INSTALL_ARGS)"; \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check $(INSTALL_ARGS); fi
	@# An empty, migrated Prefect database that new homes copy (energy_flows/services/database.py).
	-$(BIN)/python -m energy_flows.services.database
	@touch $(STAMP)

lab: $(STAMP)
	$(BIN)/energy-flows lab $(LAB_ARGS)

# The hand-out: every lesson without its solution cells and outputs (energy_flows/student.py).
# Another folder: make student STUDENT_DIR=../handout/notebooks
STUDENT_DIR ?= student-edition
student: $(STAMP)
	$(BIN)/energy-flows student "$(STUDENT_DIR)"

# Style and complexity (ruff, C901), the layers and no import cycles (import-linter,
# contracts in pyproject.toml), and types (mypy: the package ships py.typed).
lint: $(STAMP)
	$(BIN)/ruff check energy_flows tests benchmarks tools
	$(BIN)/ruff format --check energy_flows tests benchmarks tools
	$(BIN)/lint-imports
	$(BIN)/mypy

# Two test processes (pytest-xdist): the tests mostly wait for servers, workers and
# kernels, so two share 2 cores well. JOBS=0 runs them in this process, one by one.
JOBS ?= 2
unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/notebooks -n $(JOBS) --dist worksteal

# nbval in strict mode on the stored outputs; the plugin gives every lesson's kernel a fresh home.
# Two lessons at a time (each with its own home, server and kernel); a lesson's cells stay
# together, in order, in one process (--dist loadfile).
notebooks-test: $(STAMP)
	$(BIN)/python -m pytest -p tests.notebooks.nbval_plugin -n $(JOBS) --dist loadfile \
		--nbval --nbval-current-env \
		--nbval-sanitize-with tests/notebooks/sanitize.cfg --nbval-cell-timeout 240 notebooks

test: lint unit notebooks-test

# The unit tests and nbval on another Prefect, in .compat/prefect-<version>/ (tools/compat.py):
#   make compat PREFECT=3.8.8    one release
#   make compat                  the oldest and the newest the declared range accepts
PREFECT ?=
compat: $(STAMP)
	$(BIN)/python -m tools.compat $(PREFECT)

notebooks: $(STAMP)
	$(BIN)/python -m tools.execute_lessons execute

screenshots: $(STAMP)
	$(BIN)/python -m tools.screenshots

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_services.py
	$(BIN)/python benchmarks/bench_lessons.py

clean:
	rm -rf $(VENV) .energy_flows .pytest_cache .ruff_cache
