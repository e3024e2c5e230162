# builder — set-up, demo, tests and benchmarks. Needs Debian/Ubuntu; runs as root or with sudo.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Programs builder runs (and chromium, that renders the lineage page in tests), and the
# Debian packages that bring them.
SYSTEM_TOOLS    := packer debootstrap ssh-keygen chromium
SYSTEM_PACKAGES := packer debootstrap openssh-client python3-venv chromium

.PHONY: setup system-deps demo test test-quick fuzz lint docs bench clean

setup: system-deps $(BIN)/builder

system-deps:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages: $(SYSTEM_PACKAGES))"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

$(BIN)/builder: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,local]'
	touch $@

# The main job on the local default: start the emulator and build host, bake the demo app.
demo: setup
	$(BIN)/builder --local local up
	$(BIN)/builder --local bake demo dev --all

# Two workers; a test file stays on one worker so its local stack is made once.
test: setup
	$(BIN)/pytest -n 2 --dist loadfile

# The quick subset while working: no end-to-end bakes, no fault injection.
test-quick: setup
	$(BIN)/pytest -n 2 --dist loadfile -m "not slow and not faults"

# The fuzz tests of tests/hardening with many more examples than `make test` runs.
fuzz: setup
	BUILDER_FUZZ_EXAMPLES=2000 $(BIN)/pytest -p no:xdist tests/hardening/test_fuzz.py

lint: setup
	$(BIN)/ruff check builder tests
	$(BIN)/mypy
	$(BIN)/zizmor --offline .github/workflows/

# The README's key table and docs/cli.md are generated; a test fails when they are stale.
docs: setup
	$(BIN)/python -m builder.docs

bench: setup
	$(BIN)/python -m tests.bench

clean:
	-$(BIN)/builder local down
	rm -rf .builder
