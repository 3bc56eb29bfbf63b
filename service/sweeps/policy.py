"""What a stored sweep request decides for its jobs, parsed once: fusion, early stop, search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from service.dispatch.costs import FusedChoice
from service.sweeps.early_stop import Rule, flush_steps
from service.sweeps.request import EarlyStop

_RULE: pydantic.TypeAdapter[Rule] = pydantic.TypeAdapter(EarlyStop)


@dataclass(frozen=True)
class SweepPolicy:
    """The parts of a sweep's stored request that the API, controller and workers act on."""

    fused: FusedChoice
    early_stop: Rule | None
    search: bool

    @classmethod
    def of(cls, request: dict[str, Any] | None) -> SweepPolicy:
        """The policy of a stored request (validated when submitted; None: a lone job's)."""
        stored = request if isinstance(request, dict) else {}
        # `fused` is stored with its default filled in; absent: a sweep from before `auto`,
        # unfused by the default then. Anything else sends singly.
        fused = stored.get("fused", False)
        return cls(
            fused=fused if fused is True or fused == "auto" else False,
            early_stop=_rule(stored.get("early_stop")),
            search=stored.get("search") is not None,
        )

    def rung_steps(self, iterations: int) -> list[int]:
        """The steps the rule decides at for jobs of `iterations` steps (the plots mark them)."""
        return sorted(flush_steps(self.early_stop, iterations))


def _rule(stored: object) -> Rule | None:
    """The stored `early_stop` as its rule (validated when submitted), if any."""
    return None if stored is None else _RULE.validate_python(stored)
