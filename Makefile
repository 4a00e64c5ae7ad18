# pinlab: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests and the demo drive for real (servers on loopback).
DEB_PACKAGES := openssl nginx pebble lego certspotter
DEB_COMMANDS := openssl nginx pebble lego certspotter
SHARED_DATA ?= ../shared/data

.PHONY: test demo lab setup deb lint typecheck pytest clean

setup: $(STAMP) deb

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Install missing Debian packages as root; otherwise name them and stop.
deb:
	@missing=""; for c in $(DEB_COMMANDS); do \
	  command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $(DEB_PACKAGES)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	  else \
	    echo "missing commands:$$missing; install the Debian packages: sudo apt-get install -y $(DEB_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

lint: setup
	$(BIN)/ruff check pinlab tests
	$(BIN)/ruff format --check pinlab tests

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

demo: setup
	$(BIN)/pinlab demo --data $(SHARED_DATA) --out data/demo

lab: setup
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
