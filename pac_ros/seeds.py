"""Where each kind of sim episode takes its seeds, so that no two kinds share one."""

# Collection starts at seed 0 (``pac-ros collect --seed``); evaluation at EVAL_SEED.
EVAL_SEED = 100_000
# Choosing among runs or checkpoints (scripts/ship_model.py, an experiment's ``eval.select``) on episodes
# from here, which no report evaluation uses, so nothing is chosen on the episodes it is reported on.
SELECT_SEED = 200_000
# Self-improvement round r records its own episodes from ``data.seed + r * ROUND_SEED_STRIDE``.
ROUND_SEED_STRIDE = 1_000_000
