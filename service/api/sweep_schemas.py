"""Response models of the sweep routes: a sweep, its leaderboard, factors and best so far."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas import Closed, submission_warnings


class SweepOut(BaseModel):
    """A sweep with its job count and `counts`: status -> number of jobs."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    job_count: int
    owner: str | None = None
    counts: dict[str, int] | None = None


class SweepAccepted(SweepOut):
    """POST /sweeps's answer: the sweep, and what the client should know about its wait."""

    warnings: list[str] = submission_warnings()


class SweepPage(BaseModel):
    """Sweeps, newest first."""

    model_config = ConfigDict(extra="allow")

    sweeps: list[SweepOut]


class LeaderboardRow(BaseModel):
    """One job of the leaderboard: its summary, varied fields and seed."""

    model_config = ConfigDict(extra="allow")

    rank: int
    id: int
    status: str = Field(
        description="a diverged run ranks below every run that did not diverge, pruned ones "
        "included"
    )
    final_loss: float | None = Field(
        description="the last stored loss; for status diverged the last finite one before the "
        "loss stopped being a number, which is no outcome (the pages and the CLI show "
        "'diverged')"
    )
    diverged_at: int | None
    pruned_at: int | None
    pruned_loss: float | None


class SweepResults(BaseModel):
    """The leaderboard: one row per job with its id, final_loss, ..."""

    model_config = ConfigDict(extra="allow")

    results: list[LeaderboardRow]


class OutcomeStats(BaseModel):
    """Outcomes (final log10 loss, diverged runs scored) of a group of runs."""

    model_config = ConfigDict(extra="allow")

    n: int
    mean: float
    std: float | None
    min: float
    max: float
    diverged: int = Field(description="runs of the group that diverged")
    all_diverged: bool = Field(
        description="every run diverged: its numbers are the diverged score, not a loss (the "
        "pages and plots show 'diverged'), and it is never a best"
    )


class FactorLevel(OutcomeStats):
    """One level of a factor (a decade bin adds label, low and high)."""

    value: Any


class Factor(BaseModel):
    """A factor's levels (keys in `order`), its between-levels SS and share."""

    model_config = ConfigDict(extra="allow")

    levels: dict[str, FactorLevel]
    order: list[str]
    binned: str | None
    share: float | None


class BestConfig(OutcomeStats):
    """The configuration of lowest mean outcome among those with a run that did not diverge."""

    config: dict[str, Any]


class BestLr(BaseModel):
    """The best lr of one (optimizer, init); null, with null statistics, where every lr
    diverged."""

    model_config = ConfigDict(extra="allow")

    optimizer: str
    init: str
    lr: float | None
    n: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    diverged: int
    all_diverged: bool


class InteractionCell(OutcomeStats):
    """One cell of a two-way table: its two levels and the outcomes' count and mean."""

    row: str
    column: str


class Interaction(BaseModel):
    """A pair of factors: SS_AB = SS_cells - SS_A - SS_B, its share, its cells in level order."""

    model_config = ConfigDict(extra="allow")

    factors: list[str]
    name: str
    ss: float
    share: float | None
    rows: list[str]
    columns: list[str]
    cells: list[InteractionCell]


class SweepFactors(BaseModel):
    """Per factor and level: mean and spread of the final log10 loss; interactions; the best."""

    model_config = ConfigDict(extra="allow")

    used: int
    diverged: int
    diverged_value: float | None = Field(
        description="the score of a diverged run: log10 of the worst loss the sweep has seen "
        "(succeeded final losses, pruned losses at their rung, every initial loss) + 1"
    )
    diverged_rule: str
    factors: dict[str, Factor]
    interactions: list[Interaction] = []
    best_config: BestConfig | None = Field(
        description="null when no run was scored or every configuration diverged"
    )
    best_lr: list[BestLr]


class BestSoFarPoint(Closed):
    """After one ended job: the steps spent in all and the best final loss so far."""

    job_id: int
    status: str
    steps: int
    spent: int
    final_loss: float | None
    best: float | None
    best_job_id: int | None


class BestSoFar(Closed):
    """The best final loss against the training steps spent, and the point that found it."""

    sweep_id: int
    rule: str
    total_steps: int
    best: BestSoFarPoint | None
    points: list[BestSoFarPoint]
