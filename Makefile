# Heron: the two commands that matter are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= .heron

.PHONY: help sysdeps setup run test test-fast lint build offline-bundle deb msi clean

help:
	@echo "make run    - set up, init ./.heron, start manager + local agent (mTLS)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make build  - PyInstaller one-dir programs into dist/"

sysdeps:
	@bash .ci/sysdeps.sh

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,build]'
	@touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/python -m appliance.devrun --data-dir $(DATA)

test: sysdeps setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not e2e and not live and not browser and not slow"

lint: setup
	$(BIN)/ruff check rules index agent appliance tests
	$(BIN)/mypy

build: setup
	bash build/build.sh

offline-bundle: build
	bash packaging/offline/make-bundle.sh

deb: build
	bash packaging/deb/build-deb.sh

msi:
	bash packaging/windows/build-msi.sh

clean:
	rm -rf dist .pyi-work *.egg-info
