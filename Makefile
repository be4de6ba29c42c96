# Two entry points: `make run` (the explorer on built-in defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# The explorer listens on this address: localhost only unless you say otherwise (HOST=0.0.0.0).
HOST ?= 127.0.0.1
# An extra package index for `make test`'s pip install, e.g. https://download.pytorch.org/whl/cpu so
# that torch comes as the CPU-only build on an ordinary Linux machine (empty: the default index only).
PIP_EXTRA_INDEX ?=
CHROMIUM := /usr/bin/chromium

.PHONY: run test bench demo browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]' $(if $(PIP_EXTRA_INDEX),--extra-index-url $(PIP_EXTRA_INDEX))
	touch $(VENV)/.installed $@

# The explorer (Streamlit) at http://$(HOST):$(PORT), on localhost only by default; PORT=... picks
# another port, HOST=0.0.0.0 (or an interface's address) serves it to the network.
run: $(VENV)/.installed
	$(BIN)/streamlit run app/Home.py --server.address $(HOST) --server.port $(PORT) --server.headless true \
		--browser.gatherUsageStats false --client.toolbarMode minimal

# A table of example predictions in the terminal.
demo: $(VENV)/.installed
	$(BIN)/roofsim demo

# The browser test drives Debian's Chromium; install it when missing and we may (root). A failed
# install is not an error: the browser test then skips and says why.
browser:
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium for the browser test"; \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
			|| echo "chromium could not be installed; the browser test will skip"; \
	fi

test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
