# Two commands matter: `make run` (install into .venv, then start the app) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# torch comes first and alone: installed after it, deepspeed keeps this torch instead of pulling
# a CUDA build with its nvidia-* packages. On a Linux GPU machine the same pin is the CUDA build.
TORCH  ?= torch==2.13.0
# the test suite runs on 2 pytest-xdist workers (most tests wait on trainer subprocesses); work
# stealing keeps the long end-to-end tests from leaving one worker busy alone at the end
TEST_WORKERS ?= 2

.PHONY: install run test lint package clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[gui,plot,train,deepspeed,ray,dev]"
	touch $(STAMP)

install: $(STAMP)

# checks the system libraries of Qt's X11 plugin first: prints the apt-get line when one is missing
run: install
	$(BIN)/python packaging/check_qt_libs.py
	$(BIN)/lrbench-gui

test: install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: install
	$(BIN)/lint-imports

# A one-folder build of the app in dist/lrbench-gui/ (see packaging/README.md).
package: install
	$(BIN)/python -m pip install --quiet "pyinstaller>=6.3"
	PYTHON=$(abspath $(BIN))/python bash packaging/build.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
