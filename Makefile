# The two commands a new user runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STORE ?= model_store

.PHONY: venv demo test test-fast lint typecheck unit store clean docs screenshots

venv: $(STAMP)

# [dev] pulls every extra (build, loadtest, bench) and the test tools; the versions the
# images install are held to constraints.txt here too, so the tests run what ships.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[dev,mlflow]'
	touch $(STAMP)

# After changing dependencies: pin what the images install to this virtualenv's versions.
.PHONY: constraints
constraints: $(STAMP)
	$(BIN)/python -m perfserve.staging.constraints > constraints.txt

store: $(STAMP)
	$(BIN)/perfserve build --store $(STORE)

demo: $(STAMP)
	$(BIN)/perfserve demo --store $(STORE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# The inner loop: tests that run in this process (the app driven through its ASGI
# interface, the batcher, the pure parts); no server, Locust, Prometheus or nginx.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not integration"

# The staging stack's Prometheus (config and rules) against a `perfserve serve` on :8000
# and a load generator's metrics on :9465, without Docker. Needs a prometheus binary.
.PHONY: prometheus
prometheus: $(STAMP)
	$(BIN)/python -m perfserve.staging.prometheus --service 127.0.0.1:8000 --loadgen 127.0.0.1:9465 --run

# The documentation site (mkdocs.yml), strict: a dead link, a missing anchor or a page
# outside the nav fails it. `make test` runs the same build (tests/test_docs_site.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The report screenshot the README and the guides show, from a demo's report. Needs
# Chromium (Debian: apt-get install -y chromium). The Grafana dashboard has no target
# here: Debian packages no grafana-server to render it with.
SCREENSHOT_FLAGS := --headless --no-sandbox --disable-gpu --disable-background-networking \
	--no-first-run --hide-scrollbars --window-size=1280,1400

screenshots: reports/demo/report.html
	@command -v chromium >/dev/null || { echo "make screenshots: needs chromium (Debian: apt-get install -y chromium)" >&2; exit 4; }
	chromium $(SCREENSHOT_FLAGS) --screenshot=$(CURDIR)/docs/images/report.png \
		file://$(CURDIR)/reports/demo/report.html

reports/demo/report.html: | $(STAMP)
	$(BIN)/perfserve demo --store $(STORE) --out reports/demo

clean:
	rm -rf $(VENV) $(STORE) reports site .mypy_cache .ruff_cache .pytest_cache
