"""The values a job's fields may take, and which fields fused jobs share: read by both sides."""

from collections.abc import Mapping
from typing import Any, Literal, get_args

# Each Literal is the type the request model checks; its tuple is the same values, in order.
StageName = Literal["tensors", "autograd", "nn", "optim", "module"]
OptimizerName = Literal["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"]
InitName = Literal[
    "normal",
    "default",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "zeros",
]
DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["float32", "float64"]

STAGES: tuple[StageName, ...] = get_args(StageName)
# The seed's first three programs write the plain SGD update by hand.
HAND_WRITTEN_STAGES = ("tensors", "autograd", "nn")
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov", "rmsprop")
INITS: tuple[InitName, ...] = get_args(InitName)
DEVICES: tuple[DeviceName, ...] = get_args(DeviceName)
DTYPES: tuple[DtypeName, ...] = get_args(DtypeName)
# The Celery queues: one served by CPU workers, one by GPU workers.
QUEUES = ("cpu", "gpu")
MAX_SEED = 2**63 - 1
# What jobs must share to train in one fused stack; seed, lr, init, momentum and weight
# decay are each job's own.
FUSION_FIELDS = ("stage", "N", "D_in", "H", "D_out", "iterations", "dtype", "optimizer")


def fusion_key(fields: Mapping[str, Any]) -> tuple:
    """The values of a job's fields (API names) that every job of one fused stack shares."""
    return tuple(fields[name] for name in FUSION_FIELDS)
