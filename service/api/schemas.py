"""Response bodies as pydantic models: the OpenAPI document's schemas, and what tests check."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Closed(BaseModel):
    """A body with exactly these fields, so a field added to a view but not here is caught."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """What went wrong; `field` names the parameter or body field to change."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    field: str | None


class ErrorBody(Closed):
    """Every error response."""

    error: ErrorDetail


class JobOut(Closed):
    """A job: every submitted field with defaults filled in, and its state."""

    id: int
    stage: str
    optimizer: str
    momentum: float | None
    weight_decay: float | None
    init: str
    lr: float
    iterations: int
    N: int
    D_in: int
    H: int
    D_out: int
    seed: int
    device: str
    dtype: str
    name: str | None
    tags: list[str]
    status: str
    queue: str
    sweep_id: int | None
    owner: str | None = Field(
        description="the name of the token that submitted it; null without tokens"
    )
    attempts: int
    stack_size: int | None = Field(
        description="jobs its latest attempt trained with: 1 alone, K in a fused stack of K; "
        "null until it runs"
    )
    worker: str | None
    ran_on: str | None
    torch_version: str | None
    error: str | None
    steps_done: int
    final_loss: float | None
    min_loss: float | None
    min_loss_step: int | None
    diverged_at: int | None
    pruned_at: int | None = Field(
        description="status pruned: the rung (a step) at which the sweep's early-stopping rule "
        "stopped it"
    )
    pruned_loss: float | None = Field(description="status pruned: its loss at that rung")
    cancel_requested: bool
    created_at: str
    enqueued_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float | None


def submission_warnings() -> Any:
    """The `warnings` of a submission's answer (one description for jobs and sweeps)."""
    return Field(
        default_factory=list,
        description="when there is something to say: e.g. a queue its jobs went to has no live"
        " worker, so they wait",
    )


class JobAccepted(JobOut):
    """POST /jobs's answer: the job, and what the client should know about its wait."""

    warnings: list[str] = submission_warnings()


class JobPage(Closed):
    """A page of jobs; follow `next_cursor` (keyset) or `next_offset` to read on."""

    jobs: list[JobOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None
    next_cursor: str | None = Field(description="opaque token for ?cursor=; null on the last page")


class LossHistory(Closed):
    """A job's losses by step."""

    job_id: int
    status: str
    steps: list[int]
    losses: list[float | None]


class Summary(Closed):
    """One history summarized; steps are step numbers, null when never reached."""

    job_id: int
    steps: int
    first_step: int | None
    last_step: int | None
    initial: float | None
    final: float | None
    min: float | None
    min_step: int | None
    step_below_1pct: int | None
    step_below_0_1pct: int | None
    auc_log10: float | None = Field(description="trapezoid area under log10(loss) over steps")


class PairDiff(Closed):
    """Largest |la - lb| / max(|la|, |lb|) over the steps both jobs stored, and where."""

    a: int
    b: int
    common_steps: int
    max_rel_diff: float | None
    step: int | None


class CompareHistory(Closed):
    """One job's losses at the shared steps (null: no finite loss stored there)."""

    job_id: int
    losses: list[float | None]


class CompareOut(Closed):
    """Histories on one step axis, summaries, and a page of pairwise differences."""

    jobs: list[JobOut]
    points: int
    steps: list[int]
    histories: list[CompareHistory]
    summaries: list[Summary]
    pairs: list[PairDiff]
    pairs_total: int
    pairs_offset: int
    next_pairs_offset: int | None


class Check(Closed):
    """One dependency's health."""

    ok: bool
    error: str | None


class Health(Closed):
    """Whether the service can take and run jobs."""

    status: str = Field(
        description="ok; degraded: it takes jobs, but a queue it routes to has no live worker "
        "(still HTTP 200); unavailable: the database or broker does not answer (HTTP 503)"
    )
    database: Check
    broker: Check
    workers: dict[str, list[str]] = Field(description="queue -> the live workers serving it")
    warnings: list[str] = Field(description="what makes it degraded, one line each")


class JobExport(JobOut):
    """A job in an export: its fields, summary and whole history."""

    summary: dict[str, Any]
    history: dict[str, list[Any]]


class ExportOut(Closed):
    """A JSON export: the jobs (and the sweep, for a sweep export)."""

    sweep: dict[str, Any] | None = None
    jobs: list[JobExport]
