# Two commands: `make demo` (train on synthetic SHD-format data) and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url <your CPU or CUDA wheel index>"
TORCH_PIP_ARGS ?=

.PHONY: setup demo test bench clean

$(BIN)/spiketrain: pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) (set PY=python3)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch pinned first, so nothing later can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(BIN)/spiketrain

demo: setup
	$(BIN)/spiketrain train configs/shd_rsnn.yaml --workers 1

test: setup
	CI=true $(BIN)/python -m pytest tests </dev/null

bench: setup
	$(BIN)/pip install -q --no-deps snntorch==1.0.0 norse==1.1.0 nir==1.0.8 nirtorch==2.6 \
		spikingjelly==2.0.0 loguru==0.7.3
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) runs
