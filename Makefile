# The two README commands: `make demo` (the embedded default sweep) and `make test`.
# Both create .venv/ and install the project with the CPU constraints on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests drive for real: headless Chromium (pages), Prometheus (metrics).
APT_PACKAGES := chromium prometheus

.PHONY: demo test venv system-deps clean

venv: $(STAMP)

# Debian and Ubuntu ship their Python's venv (its ensurepip) apart: python3.X-venv, installed here when missing.
# Another Python without it (pyenv, conda) is not the system's: apt cannot help, so it is named instead.
$(STAMP): pyproject.toml constraints/cpu.txt
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  pkg=$$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])') || exit 1; \
	  case "$$(readlink -f "$$(command -v $(PYTHON))")" in \
	    /usr/bin/*) echo "installing Debian's $$pkg ($(PYTHON) -m venv needs it)"; \
	      $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkg;; \
	    *) echo "$(PYTHON) has no ensurepip, which python -m venv needs: install that Python's venv support, or give another (make PYTHON=...)" >&2; \
	      exit 1;; \
	  esac; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints/cpu.txt -e '.[dev]'
	touch $@

system-deps:
	@missing=""; for cmd in $(APT_PACKAGES); do command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

demo: $(STAMP)
	$(BIN)/python jobs/sweep.py

# Two test processes: most tests wait on Ray, servers or subprocesses (one process kept 2 cores half busy).
# Whole files per process (module fixtures start once), in conftest's order: the slow files first. The slowest
# tests are listed at the end, to keep the suite within its budget (~30 min on 2 cores).
TEST_WORKERS ?= 2
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

clean:
	rm -rf $(VENV) runs test-artifacts
