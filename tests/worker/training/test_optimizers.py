"""Fused optimizer kernels chosen by what the device and torch support, foreach otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.support.training import summed_squared_losses
from tests.worker.training.test_fused import DIMS, RATES, assert_same_history
from tests.worker.training.test_stages import OPTIMIZERS, make_spec
from worker.training import optimizers, train_to_list
from worker.training.fused import train_fused_to_lists
from worker.training.optimizers import fused_kernel, make_optimizer
from worker.training.spec import TrainSpec

FUSABLE = optimizers.FUSED


@pytest.fixture
def fresh_probe():  # type: ignore[no-untyped-def]
    """The probe's cache emptied before and after, so no test sees another's answers."""
    optimizers._probe_fused.cache_clear()
    yield optimizers._probe_fused
    optimizers._probe_fused.cache_clear()


def trajectory(name: str, steps: int = 100) -> torch.Tensor:
    """Losses of a small model trained with the optimizer as make_optimizer builds it."""
    torch.manual_seed(3)
    x, y = torch.randn(32, 20), torch.randn(32, 5)
    model = nn.Sequential(nn.Linear(20, 16, bias=False), nn.ReLU(), nn.Linear(16, 5, bias=False))
    optimizer = make_optimizer(name, model.parameters(), 1e-3, weight_decay=0.01)
    return summed_squared_losses(model, optimizer, x, y, steps)


@pytest.mark.parametrize("name", FUSABLE)
def test_the_probe_finds_the_cpu_kernels_once(name: str, fresh_probe) -> None:  # type: ignore[no-untyped-def]
    assert fused_kernel(name, "cpu")
    assert fused_kernel(name, "cpu")
    assert fresh_probe.cache_info().misses == 1
    assert fresh_probe.cache_info().hits == 1
    assert not fused_kernel("rmsprop", "cpu")
    assert not fused_kernel("sgd", "cpu")


@pytest.mark.parametrize("name", FUSABLE)
def test_without_the_fused_kernel_foreach_trains_the_same(name: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fused = trajectory(name)
    # A device (or torch build) that lacks the kernel: the probe says no.
    monkeypatch.setattr(optimizers, "_probe_fused", lambda _name, _device_type: False)
    built = make_optimizer(name, [nn.Parameter(torch.zeros(2))], 0.1)
    assert not built.defaults.get("fused")
    assert built.defaults["foreach"] is True
    fallback = trajectory(name)
    assert fallback[-1] < 0.9 * fallback[0]
    torch.testing.assert_close(fallback, fused, rtol=1e-4, atol=0)


def test_a_kernel_refused_at_the_first_step_is_found_by_the_probe(monkeypatch, fresh_probe) -> None:  # type: ignore[no-untyped-def]
    class OldAdagrad(torch.optim.Adagrad):
        """An older torch: accepts fused=True, then refuses it on the first step."""

        def step(self, closure=None):  # type: ignore[no-untyped-def]
            if self.defaults.get("fused"):
                raise RuntimeError("`fused=True` is not supported for this device")
            return super().step(closure)

    monkeypatch.setitem(optimizers._FUSED_CLASSES, "adagrad", OldAdagrad)
    assert not fused_kernel("adagrad", "cpu")
    assert fused_kernel("adam", "cpu")
    built = make_optimizer("adagrad", [nn.Parameter(torch.zeros(2))], 0.1)
    assert built.defaults["foreach"] is True
    assert not built.defaults.get("fused")


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("stage", ["optim", "module"])
def test_every_optimizer_trains_on_cuda_as_on_the_cpu(stage: str, name: str) -> None:
    spec = make_spec(stage=stage, optimizer=name, lr=RATES[name], iterations=150, seed=5, **DIMS)
    cpu = train_to_list(spec)
    cuda = train_to_list(spec, torch.device("cuda"))
    assert cuda.diverged_at is None
    assert cpu.diverged_at is None
    assert_same_history(cpu.losses, cuda.losses)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_fused_on_cuda_matches_the_jobs_alone(name: str) -> None:
    base = {"stage": "optim", "optimizer": name, "init": "normal", "iterations": 150}
    specs = [TrainSpec(**base, **DIMS, lr=RATES[name], seed=seed) for seed in range(3)]
    device = torch.device("cuda")
    for job, result in zip(specs, train_fused_to_lists(specs, device=device), strict=True):
        assert_same_history(train_to_list(job, device).losses, result.losses)
