"""The device a job trains on, and how its record names it."""

import torch


def resolve_device(requested: str, queue: str) -> torch.device:
    """The device a job runs on: its own request, else what its queue stands for."""
    if requested == "cuda" or (requested == "auto" and queue == "gpu"):
        if not torch.cuda.is_available():
            raise RuntimeError("the job asks for CUDA and this worker has none")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A device as a job records it, e.g. 'cpu' or 'cuda:0 NVIDIA H100'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return device.type
