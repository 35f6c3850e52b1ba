# Fresh-machine set-up: every target installs what it needs into $(VENV) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: install demo test test-fast bench clean

$(STAMP): requirements.txt requirements-ros.txt requirements-test.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-ros.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The main job: the simulated stacking stack, recorded into a dataset.
demo: $(STAMP)
	$(VENV)/bin/pac-ros demo --out outputs/demo

# The whole test suite (slow end-to-end tests included).
test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/bench_foundation.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
