# The two commands of the README:
#   make demo   set everything up (virtual environment, CPU torch, Atelier) and open the annotator
#   make test   set everything up and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8501
# Extra pip arguments for torch. This project's machines have the CPU wheel on disk; elsewhere on Linux use
#   make demo TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
# so that pip does not fetch the CUDA build from PyPI.
TORCH_PIP_ARGS ?=

.PHONY: setup demo test

# torch is installed first and pinned, so resolving the project never pulls a multi-GB CUDA build.
$(BIN)/atelier: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/atelier

demo: setup
	$(BIN)/atelier app --port $(PORT)

test: setup
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider
