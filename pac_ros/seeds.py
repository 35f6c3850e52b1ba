"""Where each kind of sim episode takes its seeds, so that no two kinds share one."""

# Collection starts at seed 0 (``pac-ros collect --seed``); evaluation at EVAL_SEED.
EVAL_SEED = 100_000
# Self-improvement round r records its own episodes from ``data.seed + r * ROUND_SEED_STRIDE``.
ROUND_SEED_STRIDE = 1_000_000
