# Heron: the two commands that matter are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= .heron
ADMIN_PORT    ?= 1520
ENDPOINT_PORT ?= 1519

.PHONY: help sysdeps setup ebpf run test test-fast test-frozen lint wheelhouse build-venv build \
	offline-bundle deb msi clean

help:
	@echo "make run    - set up, init ./.heron, start manager + local agent (mTLS)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make wheelhouse - wheels the build needs into wheelhouse/ (connected box; copy it over)"
	@echo "make build  - PyInstaller one-dir programs into dist/ (offline when wheelhouse/ exists)"
	@echo "make deb    - .deb packages into dist/packages/ (after make build)"
	@echo "make offline-bundle - air-gapped archive dist/heron-offline-*.tar.gz"
	@echo "make msi    - MSIs from Windows one-dirs in dist/ (Windows runner; wixl or WiX 3)"

sysdeps:
	@bash .ci/sysdeps.sh

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,build]'
	@touch $@

setup: $(BIN)/.installed ebpf

# The Linux eBPF sensor object (skipped with a warning when clang/bpftool/libbpf-dev are missing).
ebpf: agent/sources/ebpf/heron.bpf.o

agent/sources/ebpf/heron.bpf.o: agent/sources/ebpf/heron.bpf.c agent/sources/ebpf/build.sh
	@bash agent/sources/ebpf/build.sh

run: sysdeps setup
	$(BIN)/python -m appliance.runtime.devrun --data-dir $(DATA) \
		--admin-listen 127.0.0.1:$(ADMIN_PORT) --endpoint-listen 127.0.0.1:$(ENDPOINT_PORT)

test: sysdeps setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not e2e and not live and not browser and not slow"

lint: setup
	$(BIN)/ruff check rules index agent appliance tests
	$(BIN)/mypy

# The build venv holds Heron's runtime dependencies and PyInstaller only (build/requirements.py),
# never the dev extras: what is frozen is what the venv has. `make wheelhouse` (on a connected
# box of the target platform) puts every wheel it needs into $(WHEELHOUSE); when that directory
# exists the venv is installed from it with `pip install --no-index` (no network at all).
BUILD_VENV ?= .venv-build
WHEELHOUSE ?= wheelhouse
DIST       ?= dist
PYI_WORK   ?= .pyi-work
BUILD_PY   := $(BUILD_VENV)/bin/python

$(BUILD_PY):
	$(PYTHON) -m venv $(BUILD_VENV)

wheelhouse: $(BUILD_PY)
	$(PYTHON) build/requirements.py > $(BUILD_VENV)/requirements.txt
	$(BUILD_PY) -m pip wheel -q -w $(WHEELHOUSE) -r $(BUILD_VENV)/requirements.txt
	@echo "$(WHEELHOUSE): $$(ls $(WHEELHOUSE) | wc -l) wheels, $$(du -sm $(WHEELHOUSE) | cut -f1) MiB"

# Recreated from scratch when the requirements change, so it never keeps a dropped package.
$(BUILD_VENV)/.installed: pyproject.toml build/requirements.py
	rm -rf $(BUILD_VENV)
	$(PYTHON) -m venv $(BUILD_VENV)
	$(PYTHON) build/requirements.py > $(BUILD_VENV)/requirements.txt
	if [ -d "$(WHEELHOUSE)" ]; then \
		$(BUILD_PY) -m pip install -q --no-index --find-links "$(WHEELHOUSE)" \
			-r $(BUILD_VENV)/requirements.txt; \
	else \
		$(BUILD_PY) -m pip install -q -r $(BUILD_VENV)/requirements.txt; \
	fi
	@touch $@

build-venv: $(BUILD_VENV)/.installed

# Each artifact is a file target with its inputs as prerequisites, so `make build deb
# offline-bundle` (in one invocation or in three) builds each thing once and rebuilds only what
# changed (stamps in $(DIST); `make clean` drops them). The venv is an order-only prerequisite:
# reinstalling it does not invalidate the programs.
PROGRAM_INPUTS := pyproject.toml $(shell find rules index agent appliance build -type f \
	\( -name '*.py' -o -name '*.gen' -o -name '*.spec' -o -name '*.sh' -o -name '*.js' \
	-o -name '*.css' -o -name '*.html' -o -name '*.json' -o -name '*.svg' -o -name '*.toml' \
	-o -name '*.o' \) -not -path '*/__pycache__/*' 2>/dev/null)
DEB_INPUTS     := $(shell find packaging/deb -type f 2>/dev/null)
BUNDLE_INPUTS  := $(shell find packaging/offline -type f 2>/dev/null)
BUILD_ENV      := PYTHON=$(BUILD_PY) DISTPATH=$(DIST) WORKPATH=$(PYI_WORK)

$(DIST)/.stamp-heron-manager: $(PROGRAM_INPUTS) | $(BUILD_VENV)/.installed
	$(BUILD_ENV) bash build/build.sh manager
	@touch $@

# The agent ships the eBPF sensor: build its object first (a checkout has only the C source).
$(DIST)/.stamp-heron-agent: $(PROGRAM_INPUTS) agent/sources/ebpf/heron.bpf.o | $(BUILD_VENV)/.installed
	$(BUILD_ENV) bash build/build.sh agent
	@touch $@

build: $(DIST)/.stamp-heron-manager $(DIST)/.stamp-heron-agent

$(DIST)/.stamp-deb: $(DIST)/.stamp-heron-manager $(DIST)/.stamp-heron-agent $(DEB_INPUTS)
	bash packaging/deb/build-deb.sh --src $(DIST) --out $(DIST)/packages
	@touch $@

$(DIST)/.stamp-offline-bundle: $(DIST)/.stamp-deb $(BUNDLE_INPUTS)
	bash packaging/offline/make-bundle.sh --src $(DIST) --out $(DIST)
	@touch $@

# Frozen programs only: build both once, then smoke-test them (also part of `make test`).
test-frozen: sysdeps setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests/packaging

deb: $(DIST)/.stamp-deb

offline-bundle: $(DIST)/.stamp-offline-bundle

# Needs the Windows one-dirs (dist/heron-*/heron-*.exe): PyInstaller cannot cross-compile.
msi:
	bash packaging/windows/build-msi.sh

clean:
	rm -rf $(DIST) $(PYI_WORK) $(BUILD_VENV) *.egg-info
