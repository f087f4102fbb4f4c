# The two Quickstart commands: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: demo test test-all lint bench install browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,serve]'
	$(MAKE) --no-print-directory browser
	touch $@

# The page's tests drive Debian's chromium through its chromedriver; as root they are installed here
# (elsewhere, or without apt, those tests say so and are skipped).
browser:
	@command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium and chromium-driver are not installed; tests/test_ui.py's browser tests will be skipped"

# Train on the original Wukong cat/dog samples with the default backbone, EfficientNet-Lite0 (no network), then predict.
demo: install
	$(BIN)/wukong train $(DATA)/cat_dog/train --test $(DATA)/cat_dog/test --out runs/cat_dog
	$(BIN)/wukong predict runs/cat_dog $(DATA)/cat_dog/test/cat/cat.983.jpg $(DATA)/cat_dog/test/dog --top-k 2

# The default suite (about 11 minutes on 2 cores); `make test-all` adds the tests marked slow.
test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check wukong tests benchmarks

bench: install
	$(BIN)/python benchmarks/image_strategies.py
	$(BIN)/python benchmarks/auto.py
	$(BIN)/python benchmarks/text_layers.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/text.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/exports.py
	$(BIN)/python benchmarks/trust.py
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/active.py
	$(BIN)/python benchmarks/semi_supervised.py
	$(BIN)/python benchmarks/multilabel.py
