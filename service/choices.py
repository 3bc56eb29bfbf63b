"""The values a job's fields may take, and which fields fused jobs share: read by both sides."""

from collections.abc import Mapping
from typing import Any

STAGES = ("tensors", "autograd", "nn", "optim", "module")
# The seed's first three programs write the plain SGD update by hand.
HAND_WRITTEN_STAGES = ("tensors", "autograd", "nn")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw")
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov", "rmsprop")
INITS = (
    "normal",
    "default",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "zeros",
)
DEVICES = ("auto", "cpu", "cuda")
# The Celery queues: one served by CPU workers, one by GPU workers.
QUEUES = ("cpu", "gpu")
DTYPES = ("float32", "float64")
MAX_SEED = 2**63 - 1
# What jobs must share to train in one fused stack; seed, lr, init, momentum and weight
# decay are each job's own.
FUSION_FIELDS = ("stage", "N", "D_in", "H", "D_out", "iterations", "dtype", "optimizer")


def fusion_key(fields: Mapping[str, Any]) -> tuple:
    """The values of a job's fields (API names) that every job of one fused stack shares."""
    return tuple(fields[name] for name in FUSION_FIELDS)
