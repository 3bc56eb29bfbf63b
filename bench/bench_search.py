"""Adaptive search, side by side in one run: trainq's search sweeps against Optuna and Ray Tune.

    python -m bench.bench_search [--size default|small|both] [--seeds 10] [--trials 100]
                                 [--report-every 10] [--contenders trainq-tpe-asha,...]
                                 [--json PATH] [--no-record]

One space (optimizer x init x log-uniform lr in [1e-7, 1e-1], stage optim, 500 iterations, one
data seed) at the default size and at D_in = H = 32. The reference is the best final loss of a
dense grid over it (13 log-spaced lr x 4 optimizers x 3 inits = 156 jobs), trained once as a
grid sweep through the embedded service. Every contender trains with trainq's own training
function (worker.training.train with a LossBuffer that reports to the tuner every
--report-every steps), with the same trial budget and 2 trials at a time, so only search and
scheduling differ. Contenders run one after another for each search seed, in an order rotated
by seed, so their wall times are measured side by side under the same load. One contender is
not in the default list: `trainq-tpe-asha-wide` keeps 16 trials in flight on the same two
worker processes, so that `fused: auto` may stack them and freed rows refill.

Pruning regret is exact: after the timed part, every pruned configuration is trained to its
end offline (train_to_list; trainq random + asha's are read from trainq random without
stopping, which asks the same trials for the same seed) and counted if it would have finished
within 1% of the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.embedded import EmbeddedService
from bench.report import machine, median, publish, table

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
# 1% and 5% as the issue asks; 2x too, since every good configuration here trains to a loss of
# ~4e-12 (float32's floor), where 1% tells near-equal configurations apart by rounding.
TOLERANCES = (0.01, 0.05, 1.0)
FRACTIONS = (0.10, 0.25, 0.50)
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


@dataclass
class Trial:
    """One trial as it ended: seconds after the search started, steps trained, its outcome."""

    end: float
    steps: int
    status: str  # finished, pruned or diverged
    loss: float | None  # the final loss of a finished trial
    params: dict[str, Any]


@dataclass
class Run:
    """One contender's search for one seed."""

    contender: str
    seed: int
    trials: list[Trial]
    wall: float
    notes: dict[str, Any] = field(default_factory=dict)


# --- pure parts: what the figures are computed from ---------------------------------------


def lr_grid(count: int = 13, low: float = LR_RANGE[0], high: float = LR_RANGE[1]) -> list[float]:
    """count learning rates spaced evenly in log10 from low to high, both included."""
    a, b = math.log10(low), math.log10(high)
    return [float(f"{10 ** (a + (b - a) * i / (count - 1)):.6g}") for i in range(count)]


def key(params: dict[str, Any]) -> tuple[str, str, float]:
    """A configuration's identity: optimizer, init and lr."""
    return (params["optimizer"], params["init"], float(params["lr"]))


def within(loss: float | None, reference: float, tolerance: float) -> bool:
    """Whether a final loss is within tolerance (relative) of the reference."""
    return loss is not None and math.isfinite(loss) and loss <= reference * (1 + tolerance)


def in_end_order(trials: Iterable[Trial]) -> list[tuple[Trial, int]]:
    """Trials by end time, each with the steps of all trials ended so far, itself included."""
    total, ordered = 0, []
    for trial in sorted(trials, key=lambda t: t.end):
        total += trial.steps
        ordered.append((trial, total))
    return ordered


def to_target(
    trials: Iterable[Trial], reference: float, tolerance: float
) -> tuple[int, float] | None:
    """(steps, seconds) when the first finished trial within tolerance ended; None: never."""
    for trial, steps in in_end_order(trials):
        if trial.status == "finished" and within(trial.loss, reference, tolerance):
            return steps, trial.end
    return None


def best_by(trials: Iterable[Trial], budget: float) -> float | None:
    """The best final loss of the trials finished before budget steps were spent in all."""
    best = None
    for trial, steps in in_end_order(trials):
        if steps > budget:
            break
        if trial.status == "finished" and trial.loss is not None and math.isfinite(trial.loss):
            best = trial.loss if best is None else min(best, trial.loss)
    return best


def pruning_regret(
    trials: Iterable[Trial],
    full: Callable[[dict[str, Any]], float],
    reference: float,
    tolerance: float = 0.01,
) -> tuple[int, int]:
    """(pruned trials that would have finished within tolerance, pruned trials)."""
    pruned = [trial for trial in trials if trial.status == "pruned"]
    regret = sum(within(full(trial.params), reference, tolerance) for trial in pruned)
    return regret, len(pruned)


def robust_median(values: list[float]) -> float:
    """The median, where math.inf stands for 'never reached'."""
    return median(values) if values else math.nan


def fmt(value: float | None, digits: str = ".4g") -> str:
    """A figure for the table ('-' for none, 'never' for math.inf)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == math.inf:
        return "never"
    return format(value, digits)


def summary(
    runs: list[Run], reference: float, grid_steps: int, full: Callable[[dict[str, Any]], float]
) -> dict[str, Any]:
    """Per-seed figures and their medians and ranges, for one contender's runs."""
    per_seed: list[dict[str, Any]] = []
    for run in runs:
        figures: dict[str, Any] = {"seed": run.seed, "wall": run.wall, "trials": len(run.trials)}
        figures["steps"] = sum(trial.steps for trial in run.trials)
        for tolerance in TOLERANCES:
            hit = to_target(run.trials, reference, tolerance)
            name = f"{round(tolerance * 100)}%"
            figures[f"steps_to_{name}"] = hit[0] if hit else math.inf
            figures[f"seconds_to_{name}"] = hit[1] if hit else math.inf
        for fraction in FRACTIONS:
            figures[f"best_at_{round(fraction * 100)}%"] = best_by(
                run.trials, fraction * grid_steps
            )
        figures["best"] = best_by(run.trials, math.inf)
        regret, pruned = pruning_regret(run.trials, full, reference)
        figures["pruned"], figures["pruned_within_1%"] = pruned, regret
        per_seed.append(figures)
    names = [name for name in per_seed[0] if name != "seed"] if per_seed else []
    medians: dict[str, Any] = {}
    for name in names:
        values = [f[name] for f in per_seed if f[name] is not None]
        finite = [v for v in values if v != math.inf]
        medians[name] = {
            "median": robust_median(values),
            "min": min(finite) if finite else None,
            "max": max(finite) if finite else None,
            "reached": len(finite),
        }
    return {"per_seed": per_seed, "medians": medians}


# --- the objective every contender trains -------------------------------------------------


def job_fields(dims: dict[str, int], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's job fields, every default filled as the service fills them."""
    from service.jobspec import validate_job

    fields = {"stage": "optim", "iterations": ITERATIONS, **dims, "seed": DATA_SEED, **params}
    return validate_job(fields)


def train_reporting(
    fields: dict[str, Any], every: int, report: Callable[[int, float], bool]
) -> tuple[int, float | None, bool]:
    """Train with trainq's training function, calling report(steps, loss) every `every` steps
    (False: stop); (steps trained, final loss if it trained to the end, diverged)."""
    import torch

    from worker.training import FlushPolicy, LossBuffer, TrainSpec, train

    spec = TrainSpec.from_fields(fields)
    trained = [0, math.nan]

    def flush(first: int, chunk: list[float]) -> bool:
        trained[:] = [first + len(chunk), chunk[-1]]
        return report(first + len(chunk), chunk[-1])

    device = torch.device("cpu")
    buffer = LossBuffer(spec.iterations, device, flush, FlushPolicy(every=every, seconds=1e9))
    train(spec, device, buffer)
    steps, last = int(trained[0]), float(trained[1])
    if buffer.diverged_at is not None:
        return buffer.diverged_at, None, True
    return steps, (last if steps == spec.iterations else None), False


def full_final(fields: dict[str, Any]) -> float:
    """The final loss of a configuration trained to its end (math.inf: diverged)."""
    import torch

    from worker.training import TrainSpec, train_to_list

    torch.set_num_threads(1)
    result = train_to_list(TrainSpec.from_fields(fields))
    return math.inf if result.diverged_at is not None else result.losses[-1]


# --- trainq, through the embedded service -------------------------------------------------


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def sweep_jobs(service: EmbeddedService, sweep_id: int) -> list[dict[str, Any]]:
    """The sweep's jobs as stored (straight from SQLite, off the API's path)."""
    with sqlite3.connect(service.var_dir / "trainq.sqlite3", timeout=30) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT id, optimizer, init, lr, status, steps_done, final_loss, pruned_at, "
            "stack_size, started_at, finished_at FROM jobs WHERE sweep_id = ? ORDER BY id",
            (sweep_id,),
        ).fetchall()
    return [dict(row) for row in rows]


def space() -> dict[str, Any]:
    """The search space as a trainq sweep names it."""
    return {
        "optimizer": list(OPTIMIZERS),
        "init": list(INITS),
        "lr": {"log_uniform": list(LR_RANGE)},
    }


def trainq_grid(service: EmbeddedService, dims: dict[str, int]) -> dict[str, Any]:
    """The reference grid through the service: its jobs, best final loss and wall time."""
    request = {
        "name": "reference-grid",
        "base": {"stage": "optim", "iterations": ITERATIONS, **dims, "seed": DATA_SEED},
        "grid": {"optimizer": list(OPTIMIZERS), "init": list(INITS), "lr": lr_grid()},
    }
    start = time.perf_counter()
    sweep = service.submit_sweep(request)
    service.wait_sweep(sweep["id"])
    wall = time.perf_counter() - start
    jobs = sweep_jobs(service, sweep["id"])
    finished = [job for job in jobs if job["status"] == "succeeded"]
    best = min(finished, key=lambda job: job["final_loss"])
    return {
        "jobs": len(jobs),
        "succeeded": len(finished),
        "steps": sum(job["steps_done"] for job in jobs),
        "nominal_steps": len(jobs) * ITERATIONS,
        "wall": wall,
        "reference": best["final_loss"],
        "best": {k: best[k] for k in ("optimizer", "init", "lr")},
        "losses": {f"{j['optimizer']} {j['init']} {j['lr']:g}": j["final_loss"] for j in jobs},
    }


def trainq_search(
    service: EmbeddedService,
    dims: dict[str, int],
    method: str,
    asha: bool,
    seed: int,
    n: int,
    parallel: int = PARALLEL,
) -> Run:
    """One search sweep through the service, driven by its controller and workers."""
    request: dict[str, Any] = {
        "name": f"search-{method}",
        "base": {"stage": "optim", "iterations": ITERATIONS, **dims, "seed": DATA_SEED},
        "search": {"method": method, "n": n, "parallel": parallel, "space": space()},
        "seed": seed,
    }
    if asha:
        request["early_stop"] = {"rule": "asha", "grace": GRACE, "reduction": REDUCTION}
    start_clock, start = time.time(), time.perf_counter()
    sweep = service.submit_sweep(request)
    deadline = time.monotonic() + 3600
    while True:  # done when n trials are stored and none is in flight
        progress = service.sweep_progress(sweep["id"])
        ended = sum(v for k, v in progress.items() if k not in ("queued", "running", "steps"))
        if ended >= n and not progress.get("queued") and not progress.get("running"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep['id']} not done: {progress}")
        time.sleep(0.05)
    wall = time.perf_counter() - start
    trials = []
    statuses = {"succeeded": "finished", "pruned": "pruned", "diverged": "diverged"}
    jobs = sweep_jobs(service, sweep["id"])
    # How the trials trained: alone (1) or in stacks of K, as each job recorded it.
    stacks = Counter(job["stack_size"] for job in jobs)
    for job in jobs:
        status = statuses.get(job["status"], job["status"])
        trials.append(
            Trial(
                end=_timestamp(job["finished_at"]) - start_clock,
                steps=job["steps_done"],
                status=status,
                loss=job["final_loss"] if status == "finished" else None,
                params={k: job[k] for k in ("optimizer", "init", "lr")},
            )
        )
    name = f"trainq-{method}" + ("-asha" if asha else "") + ("-wide" if parallel == WIDE else "")
    return Run(name, seed, trials, wall, {"stack_sizes": dict(sorted(stacks.items()))})


# --- Optuna in-process: two worker processes on one journal file --------------------------


def _optuna_worker(
    path: str, seed: int, index: int, n: int, dims: dict[str, int], every: int, ready: Any, go: Any
) -> None:
    """One of the two Optuna processes: one torch thread, optimize until n trials in all."""
    import optuna
    import torch
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(
        study_name="bench",
        storage=storage,
        # Each process its own sampler seed: the same one would draw the same startup trials.
        sampler=optuna.samplers.TPESampler(seed=seed * PARALLEL + index),
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=GRACE, reduction_factor=REDUCTION
        ),
    )
    job_fields(dims, {"optimizer": "sgd", "init": "normal", "lr": 1e-3})  # imports warm

    def objective(trial: optuna.Trial) -> float:
        params = {
            "optimizer": trial.suggest_categorical("optimizer", list(OPTIMIZERS)),
            "init": trial.suggest_categorical("init", list(INITS)),
            "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
        }

        def report(steps: int, loss: float) -> bool:
            trial.report(loss, steps)
            return not trial.should_prune()

        steps, final, diverged = train_reporting(job_fields(dims, params), every, report)
        trial.set_user_attr("steps", steps)
        if diverged:
            trial.set_user_attr("diverged", True)
            return math.inf
        if final is None:
            raise optuna.TrialPruned()
        return final

    ready.release()
    go.wait()
    states = None  # every trial counts against the budget, pruned ones included
    study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(n, states=states)])


def optuna_search(dims: dict[str, int], seed: int, n: int, every: int) -> Run:
    """Optuna TPE + successive halving in two processes sharing a journal file."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    workdir = Path(tempfile.mkdtemp(prefix="bench-optuna-"))
    path = str(workdir / f"journal-{seed}.log")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(path))
    optuna.create_study(study_name="bench", storage=storage, direction="minimize")
    context = multiprocessing.get_context("spawn")
    ready, go = context.Semaphore(0), context.Event()
    workers = [
        context.Process(target=_optuna_worker, args=(path, seed, i, n, dims, every, ready, go))
        for i in range(PARALLEL)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()  # both imported and loaded the study: the clock starts now
    start_clock, start = time.time(), time.perf_counter()
    go.set()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    if any(worker.exitcode for worker in workers):
        raise RuntimeError("an Optuna worker failed")
    trials = []
    study = optuna.load_study(study_name="bench", storage=storage)
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        diverged = trial.user_attrs.get("diverged", False)
        status = "diverged" if diverged else "finished"
        if trial.state == TrialState.PRUNED:
            status = "pruned"
        assert trial.datetime_complete is not None
        trials.append(
            Trial(
                end=trial.datetime_complete.timestamp() - start_clock,
                steps=int(trial.user_attrs.get("steps", 0)),
                status=status,
                loss=trial.value if status == "finished" else None,
                params=dict(trial.params),
            )
        )
    with contextlib.suppress(OSError):
        Path(path).unlink()
    return Run("optuna-tpe-sh", seed, trials, wall, {"trials_stored": len(trials)})


# --- Ray Tune: ASHA over random search, reuse_actors=True ---------------------------------


def _ray_trainable(config: dict[str, Any]) -> None:
    """A Ray Tune function trainable: trainq's training, reporting every config['every'] steps."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    params = {name: config[name] for name in ("optimizer", "init", "lr")}

    def report(steps: int, loss: float) -> bool:
        tune.report({"loss": loss, "step": steps, "now": time.time(), "diverged": False})
        return True  # Ray stops a trial itself, at a report

    fields = job_fields(config["dims"], params)
    steps, _, diverged = train_reporting(fields, config["every"], report)
    if diverged:
        tune.report({"loss": math.inf, "step": steps, "now": time.time(), "diverged": True})


class RayTune:
    """A local Ray cluster with 2 CPUs, started once and shared by every Ray run."""

    def __init__(self) -> None:
        try:
            import ray
        except ImportError as error:
            raise RuntimeError(
                "Ray Tune is not installed: pip install -e '.[bench]' (ray[tune]==2.60.0)"
            ) from error
        self.storage = Path(tempfile.mkdtemp(prefix="bench-ray-"))
        ray.init(
            num_cpus=PARALLEL,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}},
        )

    def search(self, dims: dict[str, int], seed: int, n: int, every: int) -> Run:
        """One ASHA search of n random trials, 2 at a time."""
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator

        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=ITERATIONS,
            grace_period=GRACE,
            reduction_factor=REDUCTION,
        )
        tuner = tune.Tuner(
            tune.with_resources(_ray_trainable, {"cpu": 1}),
            param_space={
                "optimizer": tune.choice(list(OPTIMIZERS)),
                "init": tune.choice(list(INITS)),
                "lr": tune.loguniform(*LR_RANGE),
                "dims": dims,
                "every": every,
            },
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                scheduler=scheduler,
                search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=PARALLEL),
                num_samples=n,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"bench-{seed}-{time.time_ns()}", storage_path=str(self.storage), verbose=0
            ),
        )
        start_clock, start = time.time(), time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - start
        trials = []
        for result in results:
            metrics = result.metrics or {}
            if "step" not in metrics:
                continue  # errored before its first report
            steps = int(metrics["step"])
            status = "finished" if steps == ITERATIONS else "pruned"
            if metrics.get("diverged"):
                status = "diverged"
            trials.append(
                Trial(
                    end=float(metrics["now"]) - start_clock,
                    steps=steps,
                    status=status,
                    loss=float(metrics["loss"]) if status == "finished" else None,
                    params={k: result.config[k] for k in ("optimizer", "init", "lr")},
                )
            )
        return Run("ray-random-asha", seed, trials, wall, {"errors": len(results.errors)})

    def close(self) -> None:
        """Stop the cluster."""
        import ray

        ray.shutdown()


# --- the run ------------------------------------------------------------------------------


def final_losses(runs: list[Run], dims: dict[str, int]) -> dict[tuple[str, str, float], float]:
    """Every configuration's final loss trained to its end, for the pruned trials' regret:
    known from the runs that trained it to the end, the others trained offline, 2 at a time."""
    known: dict[tuple[str, str, float], float] = {}
    for run in runs:
        for trial in run.trials:
            if trial.status == "finished" and trial.loss is not None:
                known[key(trial.params)] = trial.loss
            elif trial.status == "diverged":
                known[key(trial.params)] = math.inf
    wanted = sorted(
        {
            key(trial.params)
            for run in runs
            for trial in run.trials
            if trial.status == "pruned" and key(trial.params) not in known
        }
    )
    fields = [
        job_fields(dims, dict(zip(("optimizer", "init", "lr"), k, strict=True))) for k in wanted
    ]
    with multiprocessing.get_context("spawn").Pool(PARALLEL) as pool:
        losses = pool.map(full_final, fields, chunksize=4)
    known.update(zip(wanted, losses, strict=True))
    return known


def run_size(args: argparse.Namespace, size: str, ray: RayTune | None) -> dict[str, Any]:
    """The reference grid and every contender over the seeds, at one size."""
    dims = SIZES[size]
    runs: list[Run] = []
    with EmbeddedService(concurrency=PARALLEL) as service:
        grid = trainq_grid(service, dims)
        print(
            f"[{size}] grid: {grid['jobs']} jobs, {grid['wall']:.1f} s, "
            f"reference {grid['reference']:.6g} at {grid['best']}",
            flush=True,
        )
        for i, seed in enumerate(args.seed_list):
            order = (
                args.contenders[i % len(args.contenders) :]
                + args.contenders[: i % len(args.contenders)]
            )
            for contender in order:
                if contender.startswith("trainq-"):
                    _, method, *rest = contender.split("-")
                    parallel = WIDE if "wide" in rest else PARALLEL
                    run = trainq_search(
                        service, dims, method, "asha" in rest, seed, args.trials, parallel
                    )
                elif contender == "optuna-tpe-sh":
                    run = optuna_search(dims, seed, args.trials, args.report_every)
                else:
                    if ray is None:
                        raise RuntimeError("Ray Tune was not started")
                    run = ray.search(dims, seed, args.trials, args.report_every)
                runs.append(run)
                hit = to_target(run.trials, grid["reference"], 0.01)
                stacks = run.notes.get("stack_sizes")
                print(
                    f"[{size}] seed {seed} {contender}: {len(run.trials)} trials, "
                    f"{sum(t.steps for t in run.trials)} steps, {run.wall:.1f} s; to 1%: "
                    + (f"{hit[0]} steps, {hit[1]:.1f} s" if hit else "never")
                    + (f"; trials by stack size {stacks}" if stacks else ""),
                    flush=True,
                )
    start = time.perf_counter()
    full = final_losses(runs, dims)
    offline = time.perf_counter() - start
    print(f"[{size}] pruned configurations trained to the end offline in {offline:.1f} s")
    contenders = {}
    for contender in args.contenders:
        mine = [run for run in runs if run.contender == contender]
        contenders[contender] = summary(
            mine, grid["reference"], grid["nominal_steps"], lambda p: full[key(p)]
        )
    return {
        "size": size,
        "dims": dims,
        "grid": grid,
        "offline_seconds": offline,
        "contenders": contenders,
        "runs": [asdict(run) for run in runs],
    }


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The size's table of medians and ranges."""
    grid = result["grid"]
    headers = [
        "contender",
        "to 1%: steps",
        "to 1%: s",
        "to 5%: steps",
        "to 5%: s",
        "to 2x: steps",
        "to 2x: s",
        "best @10% / 25% / 50% grid steps",
        "pruned within 1% / pruned",
        "steps in all",
        "wall s",
    ]

    def cell(m: dict[str, Any], digits: str = ".4g") -> str:
        text = fmt(m["median"], digits)
        if m["min"] is not None and m["reached"] > 1:
            text += f" ({fmt(m['min'], digits)}..{fmt(m['max'], digits)})"
        if m["reached"] < len(args.seed_list):
            text += f" [{m['reached']}/{len(args.seed_list)}]"
        return text

    rows = []
    for name, data in result["contenders"].items():
        m = data["medians"]
        best = " / ".join(fmt(m[f"best_at_{round(f * 100)}%"]["median"]) for f in FRACTIONS)
        regret = sum(s["pruned_within_1%"] for s in data["per_seed"])
        pruned = sum(s["pruned"] for s in data["per_seed"])
        rows.append(
            [
                name,
                cell(m["steps_to_1%"], ".0f"),
                cell(m["seconds_to_1%"], ".3g"),
                cell(m["steps_to_5%"], ".0f"),
                cell(m["seconds_to_5%"], ".3g"),
                cell(m["steps_to_100%"], ".0f"),
                cell(m["seconds_to_100%"], ".3g"),
                best,
                f"{regret} / {pruned}",
                cell(m["steps"], ".0f"),
                cell(m["wall"], ".3g"),
            ]
        )
    dims = result["dims"]
    return (
        f"N, D_in, H, D_out = {dims['N']}, {dims['D_in']}, {dims['H']}, {dims['D_out']}; "
        f"{len(args.seed_list)} search seeds {args.seed_list}, {args.trials} trials each, "
        f"{PARALLEL} at a time; Optuna and Ray report every {args.report_every} steps.\n"
        f"Reference: a {grid['jobs']}-job grid (13 lr x 4 x 3) through trainq in "
        f"{grid['wall']:.1f} s, best final loss {grid['reference']:.6g} "
        f"({grid['best']['optimizer']}, {grid['best']['init']}, lr {grid['best']['lr']:g}); "
        f"grid steps {grid['nominal_steps']} ({grid['steps']} trained, diverged jobs stop).\n"
        f"Medians over seeds (range); [k/n]: reached in k of n seeds (never counts as infinite "
        f"in the median); pruning regret over all seeds, exact (trained to the end offline in "
        f"{result['offline_seconds']:.0f} s).\n\n" + table(headers, rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["default", "small", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=10, help="search seeds 0 .. seeds-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=100, help="the trial budget n")
    parser.add_argument("--report-every", type=int, default=10)
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS))
    parser.add_argument("--json", type=Path, default=Path("bench_search.json"))
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    args.contenders = args.contenders.split(",")
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    args.seed_list = list(range(args.first_seed, args.first_seed + args.seeds))
    started = machine()
    sizes = ["default", "small"] if args.size == "both" else [args.size]
    ray = RayTune() if "ray-random-asha" in args.contenders else None
    results = []
    try:
        for size in sizes:
            result = run_size(args, size, ray)
            results.append(result)
            args.json.write_text(json.dumps(results, indent=1, default=str))
            publish(
                f"Adaptive search vs Optuna and Ray Tune ({size} size)",
                started,
                render(result, args),
                record=not args.no_record,
            )
    finally:
        if ray is not None:
            ray.close()
    print(f"JSON: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
