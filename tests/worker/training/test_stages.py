"""The stage contract: the seed's programs reproduced, stages agreeing, inits, specs."""

import math

import pytest
import torch
from torch import nn

from tests.support.training import summed_squared_losses
from worker.training import STAGES, LossBuffer, TrainSpec, train_to_list
from worker.training.inits import init_weight
from worker.training.optimizers import make_optimizer
from worker.training.problem import make_problem

SEED_DIMS = {"N": 64, "D_in": 1000, "H": 100, "D_out": 10}
SMALL_DIMS = {"N": 8, "D_in": 20, "H": 16, "D_out": 3}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw")


def make_spec(**fields) -> TrainSpec:
    """A spec with the seed's settings, overridden by fields."""
    defaults = {
        "stage": "tensors",
        "optimizer": "sgd",
        "init": "normal",
        "lr": 1e-6,
        "iterations": 500,
        "seed": 0,
        **SEED_DIMS,
    }
    return TrainSpec(**{**defaults, **fields})


def seed_program_1(seed: int) -> list[float]:
    """The seed's first program, PyTorch: Tensors, returning what it prints."""
    torch.manual_seed(seed)
    N, D_in, H, D_out = 64, 1000, 100, 10
    x = torch.randn(N, D_in)
    y = torch.randn(N, D_out)
    w1 = torch.randn(D_in, H)
    w2 = torch.randn(H, D_out)
    learning_rate = 1e-6
    losses = []
    for _it in range(500):
        h = x.mm(w1)
        h_relu = h.clamp(min=0)
        y_pred = h_relu.mm(w2)
        loss = (y_pred - y).pow(2).sum().item()
        losses.append(loss)
        grad_y_pred = 2.0 * (y_pred - y)
        grad_w2 = h_relu.t().mm(grad_y_pred)
        grad_h_relu = grad_y_pred.mm(w2.t())
        grad_h = grad_h_relu.clone()
        grad_h[h < 0] = 0
        grad_w1 = x.t().mm(grad_h)
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return losses


def seed_program_2(seed: int) -> list[float]:
    """The seed's second program, Tensor and autograd, returning what it prints."""
    torch.manual_seed(seed)
    N, D_in, H, D_out = 64, 1000, 100, 10
    x = torch.randn(N, D_in)
    y = torch.randn(N, D_out)
    w1 = torch.randn(D_in, H, requires_grad=True)
    w2 = torch.randn(H, D_out, requires_grad=True)
    learning_rate = 1e-6
    losses = []
    for _it in range(500):
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w1 -= learning_rate * w1.grad
            w2 -= learning_rate * w2.grad
            w1.grad.zero_()
            w2.grad.zero_()
    return losses


def assert_agree(expected: list[float], actual: list[float], steps: int = 100) -> None:
    """Relative difference <= 1e-4 at each of the first steps, final loss within 5%."""
    assert len(actual) == len(expected)
    for step, (a, b) in enumerate(zip(expected[:steps], actual[:steps], strict=True)):
        assert abs(a - b) <= 1e-4 * max(abs(a), abs(b)), f"step {step}: {a} vs {b}"
    assert actual[-1] == pytest.approx(expected[-1], rel=0.05)


@pytest.mark.parametrize("seed", [0, 2024])
@pytest.mark.parametrize(
    ("stage", "program"), [("tensors", seed_program_1), ("autograd", seed_program_2)]
)
def test_stage_reproduces_seed_program_bit_for_bit(stage, program, seed):
    result = train_to_list(make_spec(stage=stage, seed=seed))

    assert result.diverged_at is None
    assert result.losses == program(seed)


@pytest.mark.parametrize(
    ("init", "lr"),
    [
        ("normal", 1e-6),
        ("uniform", 1e-6),
        ("default", 1e-5),
        ("xavier_uniform", 1e-5),
        ("kaiming_normal", 1e-5),
        ("orthogonal", 1e-5),
    ],
)
def test_hand_written_stages_agree_with_optim_sgd(init, lr):
    # Given one seed, init and lr, when each plain-SGD stage trains,
    spec = make_spec(init=init, lr=lr, seed=7)
    tensors = train_to_list(spec).losses
    # then every stage agrees with stage tensors to float rounding.
    for stage in ("autograd", "nn", "optim"):
        other = train_to_list(make_spec(stage=stage, init=init, lr=lr, seed=7))
        assert_agree(tensors, other.losses)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_module_agrees_with_optim(optimizer):
    lr = 1e-6 if optimizer in ("sgd", "momentum", "nesterov") else 1e-4
    optim = train_to_list(make_spec(stage="optim", optimizer=optimizer, lr=lr, iterations=200))
    module = train_to_list(make_spec(stage="module", optimizer=optimizer, lr=lr, iterations=200))

    assert optim.diverged_at is None
    assert_agree(optim.losses, module.losses)
    # The optimizer really steps: the loss moves.
    assert optim.losses[-1] < optim.losses[0]


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_leaves_the_problem_untouched(stage):
    spec = make_spec(stage=stage, iterations=5, **SMALL_DIMS)
    problem = make_problem(spec, torch.device("cpu"))
    before = [t.clone() for t in (problem.x, problem.y, problem.w1, problem.w2)]

    buffer = LossBuffer(spec.iterations, torch.device("cpu"), lambda *_: True)
    STAGES[stage](problem, spec, buffer)

    for old, new in zip(before, (problem.x, problem.y, problem.w1, problem.w2), strict=True):
        assert torch.equal(old, new)


def draw(init: str, seed: int = 0, dtype: str = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """The problem's w1 (D_in=1000, H=100) and w2 (H, D_out=10) for init and seed."""
    problem = make_problem(make_spec(init=init, seed=seed, dtype=dtype), torch.device("cpu"))
    return problem.w1, problem.w2


def test_default_init_is_linear_bound_by_fan_in():
    w1, w2 = draw("default")

    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = D_in = 1000 and H = 100.
    for w, fan_in in ((w1, 1000), (w2, 100)):
        bound = 1 / math.sqrt(fan_in)
        assert w.abs().max() <= bound * (1 + 1e-6)
        assert w.abs().max() > 0.95 * bound
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_uniform_init_fills_minus_one_to_one():
    w1, _ = draw("uniform")

    assert w1.min() >= -1
    assert w1.max() <= 1
    assert w1.min() < -0.99
    assert w1.max() > 0.99
    assert w1.std().item() == pytest.approx(1 / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize(
    ("init", "std_w1", "std_w2"),
    [
        ("normal", 1.0, 1.0),
        ("xavier_uniform", math.sqrt(2 / 1100), math.sqrt(2 / 110)),
        ("xavier_normal", math.sqrt(2 / 1100), math.sqrt(2 / 110)),
        # Kaiming's fan_in is the layer's input size: sqrt(2 / 1000), not sqrt(2 / 100).
        ("kaiming_normal", math.sqrt(2 / 1000), math.sqrt(2 / 100)),
        ("kaiming_uniform", math.sqrt(2 / 1000), math.sqrt(2 / 100)),
    ],
)
def test_init_std_uses_fan_in_of_each_layer(init, std_w1, std_w2):
    w1, w2 = draw(init)

    assert w1.shape == (1000, 100)
    assert w2.shape == (100, 10)
    assert w1.is_contiguous()
    assert w2.is_contiguous()
    assert w1.std().item() == pytest.approx(std_w1, rel=0.05)
    assert w2.std().item() == pytest.approx(std_w2, rel=0.1)


def test_kaiming_uniform_bound_uses_fan_in():
    w1, _ = draw("kaiming_uniform")

    bound = math.sqrt(6 / 1000)
    assert bound * 0.95 < w1.abs().max() <= bound * (1 + 1e-6)


def test_orthogonal_init_has_orthonormal_columns():
    w1, w2 = draw("orthogonal", dtype="float64")

    torch.testing.assert_close(w1.t() @ w1, torch.eye(100, dtype=torch.float64))
    torch.testing.assert_close(w2.t() @ w2, torch.eye(10, dtype=torch.float64))


def test_zeros_init_is_zero():
    w1, w2 = draw("zeros")

    assert not w1.any()
    assert not w2.any()


@pytest.mark.parametrize("init", ["normal", "default", "uniform", "xavier_normal", "orthogonal"])
def test_init_depends_only_on_seed(init):
    w1, w2 = draw(init, seed=3)
    same_w1, same_w2 = draw(init, seed=3)
    other_w1, _ = draw(init, seed=4)

    assert torch.equal(w1, same_w1)
    assert torch.equal(w2, same_w2)
    assert not torch.equal(w1, other_w1)


def test_data_is_drawn_before_weights_whatever_the_init():
    normal = make_problem(make_spec(init="normal", seed=5), torch.device("cpu"))
    default = make_problem(make_spec(init="default", seed=5), torch.device("cpu"))

    assert torch.equal(normal.x, default.x)
    assert torch.equal(normal.y, default.y)


def test_init_weight_matches_linear_default_layout():
    # nn.Linear(in, out) draws its (out, in) weight from the same generator state.
    weight = init_weight("default", 30, 7, torch.Generator().manual_seed(1), torch.float32)
    linear = nn.Linear(30, 7, bias=False)
    generator = torch.Generator().manual_seed(1)
    nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)

    assert torch.equal(weight, linear.weight.detach().t())


@pytest.mark.parametrize("stage", list(STAGES))
def test_diverging_run_stops_with_finite_history(stage):
    result = train_to_list(make_spec(stage=stage, lr=10.0, iterations=2000, **SMALL_DIMS))

    assert result.diverged_at is not None
    assert result.diverged_at < 2000
    assert len(result.losses) == result.diverged_at
    assert all(math.isfinite(loss) for loss in result.losses)


def test_float64_training_records_exact_losses():
    spec = make_spec(lr=1e-3, dtype="float64", **SMALL_DIMS)
    problem = make_problem(spec, torch.device("cpu"))
    result = train_to_list(spec)

    assert problem.x.dtype == torch.float64
    first = (problem.x.mm(problem.w1).clamp(min=0).mm(problem.w2) - problem.y).pow(2).sum()
    assert result.losses[0] == first.item()
    assert result.losses[-1] < result.losses[0]


def test_spec_from_fields_ignores_job_only_fields():
    job = {**SEED_DIMS, "stage": "optim", "optimizer": "adam", "init": "default", "lr": 1e-4}
    job |= {"iterations": 3, "seed": 9, "name": "a", "tags": ["x"], "device": "cpu"}

    spec = TrainSpec.from_fields(job)

    assert spec.optimizer == "adam"
    assert spec.seed == 9
    assert spec.dtype == "float32"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"stage": "nn", "optimizer": "adam"}, "only trains plain sgd"),
        ({"stage": "tensors", "weight_decay": 0.1}, "only trains plain sgd"),
        ({"stage": "pipeline"}, "stage must be one of"),
        ({"init": "he"}, "init must be one of"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"iterations": 0}, "iterations must be a positive integer"),
        ({"seed": -1}, "seed must be in"),
    ],
)
def test_spec_refuses_what_no_stage_trains(fields, reason):
    with pytest.raises(ValueError, match=reason):
        make_spec(**fields)


def test_make_optimizer_defaults_and_options():
    params = [nn.Parameter(torch.zeros(2))]

    momentum = make_optimizer("momentum", params, 0.1)
    nesterov = make_optimizer("nesterov", params, 0.1, momentum=0.5, weight_decay=0.01)
    rmsprop = make_optimizer("rmsprop", params, 0.1, momentum=0.3)

    assert momentum.defaults["momentum"] == 0.9
    assert not momentum.defaults["nesterov"]
    assert nesterov.defaults["nesterov"]
    assert nesterov.defaults["momentum"] == 0.5
    assert nesterov.defaults["weight_decay"] == 0.01
    assert rmsprop.defaults["momentum"] == 0.3
    assert make_optimizer("sgd", params, 0.1).defaults["momentum"] == 0
    assert isinstance(make_optimizer("adamw", params, 0.1), torch.optim.AdamW)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("adam", params, 0.1, momentum=0.9)


@pytest.mark.parametrize(
    "name", ["sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw"]
)
def test_optimizers_use_torchs_fused_kernel_and_follow_the_loop_implementation(name):
    """Fused where torch has a kernel; the same trajectory as torch's per-operation loop."""

    def trajectory(fused: bool) -> torch.Tensor:
        torch.manual_seed(3)
        x, y = torch.randn(64, 50), torch.randn(64, 10)
        model = nn.Sequential(
            nn.Linear(50, 20, bias=False), nn.ReLU(), nn.Linear(20, 10, bias=False)
        )
        optimizer = make_optimizer(name, model.parameters(), 1e-3, weight_decay=0.01)
        if not fused:  # torch's default on the CPU: one operation at a time over each tensor
            for group in optimizer.param_groups:
                group.update(foreach=False, **({"fused": False} if "fused" in group else {}))
        return summed_squared_losses(model, optimizer, x, y, 200)

    built = make_optimizer(name, [nn.Parameter(torch.zeros(2))], 0.1)
    assert built.defaults.get("fused") is (None if name in ("sgd", "rmsprop") else True)
    fused, loop = trajectory(True), trajectory(False)
    assert fused[-1] < 0.9 * fused[0]
    torch.testing.assert_close(fused, loop, rtol=1e-4, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("stage", "optimizer", "lr"),
    [
        ("tensors", "sgd", 1e-6),
        ("autograd", "sgd", 1e-6),
        ("nn", "sgd", 1e-6),
        ("optim", "momentum", 1e-6),
        ("module", "adam", 1e-4),
    ],
)
def test_cuda_agrees_with_cpu(stage, optimizer, lr):
    spec = make_spec(stage=stage, optimizer=optimizer, lr=lr, iterations=200, seed=3)

    cpu = train_to_list(spec)
    cuda = train_to_list(spec, torch.device("cuda"))

    assert cuda.diverged_at is None
    assert_agree(cpu.losses, cuda.losses)
