"""The training parameters of one job, as the worker reads them."""

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

from service.choices import DTYPES as DTYPE_NAMES
from service.choices import HAND_WRITTEN_STAGES as HAND_WRITTEN_SGD_STAGES
from service.choices import INITS as INIT_NAMES
from service.choices import MAX_SEED
from service.choices import OPTIMIZERS as OPTIMIZER_NAMES
from service.choices import STAGES as STAGE_NAMES


@dataclass(frozen=True)
class TrainSpec:
    """What to train: stage, the three factors, sizes, seed and dtype."""

    stage: str
    optimizer: str
    init: str
    lr: float
    iterations: int
    N: int
    D_in: int
    H: int
    D_out: int
    seed: int
    dtype: str = "float32"
    momentum: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        """Refuse a spec no stage can train."""
        for name, allowed in (
            ("stage", STAGE_NAMES),
            ("optimizer", OPTIMIZER_NAMES),
            ("init", INIT_NAMES),
            ("dtype", DTYPE_NAMES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if self.stage in HAND_WRITTEN_SGD_STAGES and (
            self.optimizer != "sgd" or self.momentum is not None or self.weight_decay is not None
        ):
            raise ValueError(f"stage {self.stage!r} only trains plain sgd")
        if not self.lr > 0:
            raise ValueError("lr must be positive")
        for name in ("iterations", "N", "D_in", "H", "D_out"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0 .. {MAX_SEED}")

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Self:
        """Build a spec from a job's fields, ignoring those training does not use."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in fields.items() if key in names})
