# Two entry points: `make run` (the explorer on built-in defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
CHROMIUM := /usr/bin/chromium

.PHONY: run test bench demo browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

# The explorer (Streamlit) at http://localhost:$(PORT); PORT=... picks another port.
run: $(VENV)/.installed
	$(BIN)/streamlit run app/Home.py --server.port $(PORT) --server.headless true \
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
