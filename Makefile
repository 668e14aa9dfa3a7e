# The two commands of the README: `make demo` (set up + main job on the reference zoo) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The CPU wheel of torch lies on disk; the constraints file keeps it so nothing pulls CUDA wheels.
PIPC   := $(PIP) install -c constraints.txt
# Portable llama.cpp build (the wheel is cached by pip and reused).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup demo test clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIPC) -q torch==2.13.0
	$(PIPC) -q -e '.[test,llama]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/downsize zoo list
	$(BIN)/downsize run recipes/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
