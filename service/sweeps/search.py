"""A search sweep's sampler: Optuna's, through ask-and-tell, over a study rebuilt from the tables.

trainq's job rows are the truth; the study is rebuilt from them for every ask (finished jobs as
complete trials, diverged ones as the worst, pruned ones as pruned at their last step, those
in flight as running), and each ask's sampler is seeded from the sweep's seed and the ask's
number, so an ask depends only on the tables: a restarted controller asks what the first one
would have, and a sweep run one trial at a time replays exactly.
"""

from __future__ import annotations

import itertools
import math
import random
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from service.config import Limits
from service.jobs import SPEC_COLUMNS
from service.jobspec import SpecError, validate_job
from service.models import Job, JobStatus
from service.sweeps.request import Distribution, LogUniform, Search, SweepRequest

# Corners of a space checked up front: beyond this many, the first ones.
MAX_CORNERS = 4096
STATES = {
    JobStatus.SUCCEEDED: TrialState.COMPLETE,
    JobStatus.DIVERGED: TrialState.COMPLETE,
    JobStatus.PRUNED: TrialState.PRUNED,
    JobStatus.QUEUED: TrialState.RUNNING,
    JobStatus.RUNNING: TrialState.RUNNING,
}


def distribution(space: Distribution) -> BaseDistribution:
    """The Optuna distribution of one field of a space."""
    if isinstance(space, list):
        return CategoricalDistribution(space)
    if isinstance(space, LogUniform):
        low, high = space.log_uniform
        return FloatDistribution(low, high, log=True)
    low, high = space.uniform
    return FloatDistribution(low, high)


def make_sampler(method: str, seed: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler of the method, seeded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if method == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        if method == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)


def ask_seed(sweep_seed: int, number: int) -> int:
    """The seed of the sampler of a sweep's ask number `number`."""
    return random.Random(f"{sweep_seed}:{number}").getrandbits(32)


def trial_of(job: Job, dists: dict[str, BaseDistribution]) -> FrozenTrial | None:
    """The job as a trial of the study (None: failed or cancelled, telling the sampler nothing)."""
    state = STATES.get(JobStatus(job.status))
    if state is None:
        return None
    params = {name: getattr(job, SPEC_COLUMNS[name]) for name in dists}
    loss = job.final_loss if job.final_loss is not None else math.inf
    if job.status == JobStatus.DIVERGED or not math.isfinite(loss):
        loss = math.inf
    if state == TrialState.COMPLETE:
        value: float | None = loss
        steps = {}
    else:
        value, steps = None, {max(job.steps_done - 1, 0): loss} if job.steps_done else {}
    return optuna.trial.create_trial(
        state=state, value=value, params=params, distributions=dists, intermediate_values=steps
    )


def ask(search: Search, sweep_seed: int, number: int, jobs: Sequence[Job]) -> dict[str, Any]:
    """The parameters of the sweep's ask number `number`, given its jobs so far."""
    dists = {name: distribution(space) for name, space in search.space.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=make_sampler(search.method, ask_seed(sweep_seed, number))
    )
    study.add_trials(t for t in (trial_of(job, dists) for job in jobs) if t is not None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return dict(study.ask(dists).params)


def trial_seed(request: SweepRequest, sweep_seed: int) -> int | None:
    """The seed every trial shares (None: the search or the base sets it), as a grid's jobs do."""
    if "seed" in request.base or (request.search and "seed" in request.search.space):
        return None
    return random.Random(sweep_seed).getrandbits(63)


def trial_fields(request: SweepRequest, params: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """A trial's job fields: the base, the sampled parameters, the shared seed and the name."""
    fields = {**request.base, **params}
    fields.setdefault("name", request.name)
    if seed is not None:
        fields["seed"] = seed
    return fields


def _corner_levels(space: Distribution) -> list[Any]:
    if isinstance(space, list):
        return list(space)
    return list(space.log_uniform if isinstance(space, LogUniform) else space.uniform)


def check_space(request: SweepRequest, limits: Limits) -> None:
    """Refuse a space with an invalid corner (every one with skip_invalid), naming the field.

    The corners are every list level crossed with each range's bounds: the job's rules and
    caps are ranges, so a space whose corners are valid has no invalid trial inside.
    """
    assert request.search is not None
    space = request.search.space
    names = sorted(space)
    corners = itertools.islice(
        itertools.product(*(_corner_levels(space[name]) for name in names)), MAX_CORNERS
    )
    errors = []
    for corner in corners:
        params = dict(zip(names, corner, strict=True))
        try:
            validate_job(trial_fields(request, params, 0), limits)
        except SpecError as error:
            if not request.skip_invalid:
                raise _named(error, request, params) from None
            errors.append(_named(error, request, params))
            continue
        if request.skip_invalid:
            return
    if errors:
        raise errors[0]


def _named(error: SpecError, request: SweepRequest, params: dict[str, Any]) -> SpecError:
    """The job's error as the search's: where the request sets the field, and the trial."""
    field = error.field or ""
    where = field
    if field in params:
        where = f"search.space.{field}"
    elif field in request.base:
        where = f"base.{field}"
    return SpecError(where or None, f"{where}: the trial {params} is invalid: {error.message}")
