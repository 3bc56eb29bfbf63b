"""The values a job's fields may take: one list, read by the API's validation and the worker."""

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
DTYPES = ("float32", "float64")
MAX_SEED = 2**63 - 1
