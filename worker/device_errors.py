"""CUDA errors that leave the GPU context unusable: the worker ends after recording one."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# EX_TEMPFAIL: the supervisor (trainq up) or compose's restart policy starts a fresh worker.
EXIT_DEVICE_BROKEN = 75


def is_fatal_device_error(error: BaseException) -> bool:
    """An illegal memory access, a device-side assert...: every later kernel would fail too.

    torch raises these as RuntimeError (torch.AcceleratorError in newer builds) with "CUDA error"
    in the message. Running out of memory is not one: the context survives it.
    """
    import torch

    if isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    return isinstance(error, RuntimeError) and "CUDA error" in str(error)


def exit_if_device_broken(error: BaseException | None) -> None:
    """End this process now if error broke the device; call after recording the failure."""
    if error is None or not is_fatal_device_error(error):
        return
    log.critical(
        "CUDA error, this process's GPU context is unusable: exiting so a fresh one starts"
    )
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # No warm shutdown: the pool's other threads share the broken context. Their jobs' leases
    # run out and the reconciler re-sends them; this job is already recorded as failed.
    os._exit(EXIT_DEVICE_BROKEN)


def simulate_if_told(job_name: str | None) -> None:
    """Test hook: a job with the configured name raises the CUDA error a broken kernel would."""
    if os.environ.get("TRAINQ_TESTING") != "1":
        return
    poison = os.environ.get("TRAINQ_TEST_CUDA_ERROR_ON_JOB_NAME")
    if poison and job_name == poison:
        raise RuntimeError(
            "CUDA error: an illegal memory access was encountered (simulated by the test hook)"
        )
