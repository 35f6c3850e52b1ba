# Fresh-machine set-up: every target installs what it needs into $(VENV) first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: install demo test test-fast bench pixels-model shipped-model suboptimal-model clean

$(STAMP): requirements.txt requirements-ros.txt requirements-test.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-ros.txt -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The main job: the simulated stacking stack closed loop with the shipped PAC model
# (bridge + policy node + recorder), recorded into outputs/demo with videos of a success and a failure.
demo: $(STAMP)
	$(VENV)/bin/pac-ros demo --out outputs/demo --episodes 5

# The whole test suite (slow end-to-end tests included).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/bench_foundation.py
	$(PY) bench/bench_ros.py

# The deployed pixels model from nothing (cameras + joints + instruction; docs/pixels.md): 1000
# perfect-expert episodes; three training seeds of config/train_pixels.yaml side by side, one thread
# each (the block locator learns from the recorded simulator poses, then BC on the poses it estimates);
# scripts/ship_model.py ships the best on selection seeds 200000.. to models/pac_tiny_pixels and
# reports every seed on 300000..300199 with robustness figures (two evaluation processes).
PIX := outputs/pixels
PIX_SEEDS := 0 1 2
pixels-model: $(STAMP)
	rm -rf $(PIX)
	$(VENV)/bin/pac-ros collect --out $(PIX)/data --episodes 1000 --quality perfect --seed 1
	pids=""; for s in $(PIX_SEEDS); do \
		OMP_NUM_THREADS=1 $(VENV)/bin/pac-ros train --config config/train_pixels.yaml --data $(PIX)/data \
			--out $(PIX)/run_s$$s --seed $$s --no-progress > $(PIX)/train_s$$s.log 2>&1 & pids="$$pids $$!"; \
	done; for p in $$pids; do wait $$p || exit 1; done
	$(PY) scripts/ship_model.py $(foreach s,$(PIX_SEEDS),$(PIX)/run_s$(s)) --out models/pac_tiny_pixels \
		--select-episodes 50 --episodes 200 --seed 300000 --robustness 50 --jobs 2 --command "make pixels-model"

# Regenerate models/pac_tiny_stacking from scratch: 300 perfect-expert episodes, 1000 steps of
# train_tiny.yaml (alpha stays 1 for 3000 steps, so this is pure BC), card. Why not mixed data yet: the note of
# docs/learnability.md.
SHIP := outputs/shipped
shipped-model: $(STAMP)
	rm -rf $(SHIP)
	$(VENV)/bin/pac-ros collect --out $(SHIP)/data --episodes 300 --quality perfect --seed 1
	$(VENV)/bin/pac-ros train --config config/train_tiny.yaml --data $(SHIP)/data --out $(SHIP)/run --steps 1000
	$(PY) scripts/ship_model.py $(SHIP)/run --out models/pac_tiny_stacking --episodes 100

# PAC on the sub-optimal data (data/suboptimal, collected if absent) from the cameras: the best PAC recipe
# (per-loss clipping, docs/results_grad_clip.md) on the shipped pixels model's block locator, 3 seeds
# (docs/results_pixels_per_loss.md); each run's target-network weights are exported, the best on the selection
# seeds is shipped, every seed reported on 300000..300199 (~1.25 h on 2 cores).
SUB := outputs/experiment_pixels/runs/pac_gamma1_terminal_resampled_4000steps_clip_per_loss
suboptimal-model: $(STAMP)
	$(VENV)/bin/pac-ros experiment --config config/experiment_pixels_per_loss.yaml --report docs/results_pixels_per_loss.md --jobs 3
	$(PY) scripts/ship_model.py $(SUB)_s0 $(SUB)_s1 $(SUB)_s2 --out models/pac_tiny_suboptimal --weights target \
		--select-episodes 50 --episodes 200 --seed 300000 --decoding mean --jobs 2 --command "make suboptimal-model"

clean:
	rm -rf $(VENV) outputs .pytest_cache
