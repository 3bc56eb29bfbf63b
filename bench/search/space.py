"""The search space, the trial budget's shape and the contenders, as every module reads them."""

from __future__ import annotations

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
INITS = ("normal", "xavier_uniform", "kaiming_normal")
LR_RANGE = (1e-7, 1e-1)
ITERATIONS = 500
DATA_SEED = 0
SIZES = {
    "default": {"N": 64, "D_in": 1000, "H": 100, "D_out": 10},
    "small": {"N": 64, "D_in": 32, "H": 32, "D_out": 10},
}
# Successive halving as in the anchor: rungs at 20, 60 and 180 steps, the best third on.
GRACE, REDUCTION = 20, 3
CONTENDERS = (
    "trainq-tpe-asha",
    "trainq-random-asha",
    "trainq-random",
    "trainq-tpe-asha-wide",
    "optuna-tpe-sh",
    "ray-random-asha",
)
PARALLEL = 2
# trials in flight for the `-wide` contender: on the same 2 processes they fuse into stacks that
# refill (where `fused: auto` says fusing pays), which 2 trials in flight never do.
WIDE = 16
DEFAULT_CONTENDERS = tuple(c for c in CONTENDERS if not c.endswith("-wide"))
