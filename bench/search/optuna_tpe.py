"""Optuna in-process: TPE and successive halving in two worker processes on one journal file."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.search.objective import job_fields, train_reporting
from bench.search.scoring import Run, Trial
from bench.search.space import GRACE, INITS, LR_RANGE, OPTIMIZERS, PARALLEL, REDUCTION


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
