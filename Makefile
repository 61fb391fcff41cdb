# tagwatch — the two commands that matter on a fresh machine: `make demo` and `make test`.
# Everything else is set up by them: .venv, pip packages (pinned by constraints.txt), Debian packages.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EXTRAS ?= all,dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install sysdeps sources test test-unit test-integration demo down lint clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check --upgrade pip
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $@

install: $(STAMP) sysdeps sources  ## create .venv and install tagwatch with everything it uses

sysdeps:  ## apt-get install the Debian packages in sysdeps.txt that are missing
	@scripts/install-sysdeps.sh

sources: $(STAMP)  ## fetch the post sources that are not Debian packages (OpenMoji: pinned npm tarball, checked)
	@$(VENV)/bin/tagwatch data fetch --quiet

test: install  ## the whole suite: unit + integration against real SeaweedFS/Tansu (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install  ## unit tests only (seconds)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: install  ## integration tests only
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

demo: install  ## the main job end to end on the embedded stack (QUICK=1 for the short variant)
	$(VENV)/bin/tagwatch demo $(if $(QUICK),--quick,)

down:  ## stop the embedded stack
	@if [ -x $(VENV)/bin/tagwatch ]; then $(VENV)/bin/tagwatch stack down; else echo "nothing installed"; fi

clean:  ## remove caches and build leftovers (keeps .venv and the stack's state dir)
	rm -rf build dist .pytest_cache src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean  ## also remove .venv
	rm -rf $(VENV)
