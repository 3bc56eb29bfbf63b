"""The values a job's fields may take: one list, read by the API's validation and the worker."""

from typing import Literal, get_args

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
MAX_SEED = 2**63 - 1
