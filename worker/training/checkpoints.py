"""Checkpoints of a training run: save its state every so often, load it to resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from worker.training.snapshot import pack, unpack

# save(step, blob, layout) stores the state training resumes from at `step`.
Save = Callable[[int, bytes, dict[str, Any]], None]


def _due(every: int, seconds: float, steps: int, since: float) -> bool:
    """When a checkpoint is due: `steps` trained since the last, at least `every` of them, or
    `seconds` passed since the monotonic time `since` (0 turns either off)."""
    if steps <= 0:
        return False
    by_steps = every > 0 and steps >= every
    by_time = seconds > 0 and time.monotonic() - since >= seconds
    return by_steps or by_time


@dataclass(frozen=True)
class Snapshot:
    """A stored checkpoint: training resumes at `step`."""

    step: int
    blob: bytes
    layout: dict[str, Any]


class Checkpointer:
    """Saves a stage's tensors (and optimizer state) when due; loads a snapshot into them."""

    def __init__(
        self,
        save: Save,
        every: int = 0,
        seconds: float = 0.0,
        initial: Snapshot | None = None,
    ) -> None:
        self._save = save
        self._every = every
        self._seconds = seconds
        self._initial = initial
        self._last_step = initial.step if initial else 0
        self._last_time = time.monotonic()
        self._tensors: dict[str, Tensor] = {}
        self._optimizer: torch.optim.Optimizer | None = None

    def attach(self, tensors: dict[str, Tensor], optimizer: torch.optim.Optimizer | None) -> int:
        """Track the stage's state; load the initial snapshot into it; the first step to run."""
        self._tensors, self._optimizer = tensors, optimizer
        if self._initial is None:
            return 0
        saved = unpack(self._initial.blob, self._initial.layout)
        with torch.no_grad():
            for name, tensor in tensors.items():
                tensor.copy_(saved[f"model.{name}"])
        if optimizer is not None and "optimizer" in self._initial.layout["extra"]:
            optimizer.load_state_dict(_optimizer_state(saved, self._initial.layout["extra"]))
        return self._initial.step

    @property
    def attached(self) -> bool:
        """Whether a stage's state is tracked (there is something to save)."""
        return bool(self._tensors)

    def due(self, step: int) -> bool:
        """Whether a checkpoint should be taken before `step` trains."""
        if not self._tensors:
            return False
        return _due(self._every, self._seconds, step - self._last_step, self._last_time)

    def save(self, step: int) -> None:
        """Store the tracked state as the one to resume from at `step`."""
        tensors = {f"model.{name}": t for name, t in self._tensors.items()}
        extra: dict[str, Any] = {}
        if self._optimizer is not None:
            state = self._optimizer.state_dict()
            extra["optimizer"] = {"param_groups": state["param_groups"], "state": {}}
            for index, values in state["state"].items():
                plain = extra["optimizer"]["state"].setdefault(str(index), {})
                for key, value in values.items():
                    if isinstance(value, Tensor):
                        tensors[f"optimizer.{index}.{key}"] = value
                    else:
                        plain[key] = value
        blob, layout = pack(tensors, extra)
        self._save(step, blob, layout)
        self._last_step, self._last_time = step, time.monotonic()


def _optimizer_state(saved: dict[str, Tensor], extra: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state_dict rebuilt from the snapshot's tensors and JSON."""
    state: dict[int, dict[str, Any]] = {
        int(index): dict(plain) for index, plain in extra["optimizer"]["state"].items()
    }
    for name, tensor in saved.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": extra["optimizer"]["param_groups"]}


# save([(job index, step, blob, layout)]) stores every running job's state of one stack, each
# at its own step (one transaction, say).
StackSave = Callable[[list[tuple[int, int, bytes, dict[str, Any]]]], None]


def is_stacked(layout: dict[str, Any] | None) -> bool:
    """Whether a checkpoint holds a fused stack's row (it resumes fused, never in a stage)."""
    return layout is not None and "fused" in layout.get("extra", {})


class StackCheckpointer:
    """Saves each row of a fused stack as its job's own checkpoint; loads rows to resume."""

    def __init__(self, save: StackSave, every: int = 0, seconds: float = 0.0) -> None:
        self._save = save
        self._every = every
        self._seconds = seconds
        self._last_step = 0
        self._last_time = time.monotonic()

    def load(
        self, snapshots: list[Snapshot], params: list[Tensor]
    ) -> tuple[list[int], list[list[Tensor]]]:
        """Copy every row's weights into the stacked params; each row's step, optimizer slots."""
        rows = [unpack(s.blob, s.layout) for s in snapshots]
        with torch.no_grad():
            for index, param in enumerate(params):
                param.copy_(torch.stack([row[f"model.w{index + 1}"] for row in rows]))
        slots = sorted({name for row in rows for name in row if name.startswith("optimizer.")})
        state = [
            [
                torch.stack([row[name] for row in rows]).to(params[0].device)
                for name in slots
                if name.startswith(f"optimizer.{index}.")
            ]
            for index in range(len(params))
        ]
        steps = [snapshot.step for snapshot in snapshots]
        self._last_step = max(steps)
        return steps, state

    def due(self, step: int) -> bool:
        """Whether the stack should be saved now, its clock at `step`."""
        return _due(self._every, self._seconds, step - self._last_step, self._last_time)

    def save(
        self,
        clock: int,
        steps: list[int],
        jobs: list[int],
        params: list[Tensor],
        state: list[list[Tensor]],
        name: str,
    ) -> None:
        """Store row k of the stack as job jobs[k]'s state to resume from at steps[k].

        `clock` is the stack's own count of steps (what `due` measures); rows that joined a
        refilled stack later are at earlier steps of their own.
        """
        rows = []
        for row, (job, step) in enumerate(zip(jobs, steps, strict=True)):
            tensors = {f"model.w{i + 1}": p[row] for i, p in enumerate(params)}
            for i, slots in enumerate(state):
                tensors.update({f"optimizer.{i}.{n}": s[row] for n, s in enumerate(slots)})
            blob, layout = pack(tensors, {"fused": {"optimizer": name, "step": step}})
            rows.append((job, step, blob, layout))
        self._save(rows)
        self._last_step, self._last_time = clock, time.monotonic()
