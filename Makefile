# pinlab: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests and the demo drive for real (servers on loopback; Chromium
# renders the report to check what a reader sees).
DEB_PACKAGES := openssl nginx pebble lego certspotter chromium
DEB_COMMANDS := openssl nginx pebble lego certspotter chromium
SHARED_DATA ?= ../shared/data

.PHONY: test demo lab setup deb lint typecheck pytest clean

setup: $(STAMP) deb

$(STAMP): pyproject.toml
	@echo "creating .venv and upgrading pip…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "installing pinlab and its Python packages into .venv (about a minute)…"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)
	@echo "pinlab is ready: source .venv/bin/activate, then pinlab --help (or bin/pinlab --help)"

# Install missing Debian packages as root; otherwise name them and stop.
deb:
	@missing=""; for c in $(DEB_COMMANDS); do \
	  command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $(DEB_PACKAGES) (a minute or two)…"; \
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

# The main job on the embedded default: the rotation lab and the real histories, end to end.
DEMO := data/demo
demo: setup
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/pinlab demo --data $(SHARED_DATA) --out $(DEMO)
	@echo "fetching certifi's release history from PyPI into data/certifi (once; 1-2 minutes)…"
	$(BIN)/pinlab truststores fetch || echo "pinlab: warning: certifi history not fetched; replays validate with today's roots"
	@echo "rotation lab: 30 hosts x 12 rounds of real ACME renewals on loopback (about a minute)…"
	$(BIN)/pinlab lab run data/lab/demo.toml --db $(DEMO)/pinlab.duckdb --out $(DEMO)/lab
	$(BIN)/pinlab import-pem $(SHARED_DATA)/real-histories/manifest.csv --db $(DEMO)/pinlab.duckdb --label real-histories
	@echo "collection campaign against a loopback nginx farm…"
	$(BIN)/pinlab demo-campaign --db $(DEMO)/pinlab.duckdb --out $(DEMO)/campaign
	$(BIN)/pinlab history --db $(DEMO)/pinlab.duckdb --out $(DEMO)/ledger.csv --summary
	@echo "replaying pins over every history (about a minute)…"
	$(BIN)/pinlab simulate --db $(DEMO)/pinlab.duckdb --out $(DEMO)/replay.csv
	$(BIN)/pinlab bench pins --quick --out $(DEMO)/bench.json
	@echo "executing the six notebooks into the report, then checking each page in headless Chromium (a few minutes)…"
	$(BIN)/pinlab report --db $(DEMO)/pinlab.duckdb --data $(SHARED_DATA) --bench $(DEMO)/bench.json --out $(DEMO)/report --screenshots $(DEMO)/screenshots

lab: setup
	$(BIN)/python -m ipykernel install --sys-prefix --name pinlab --display-name "Python (pinlab)" >/dev/null
	$(BIN)/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
