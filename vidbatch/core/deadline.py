"""A time budget for one piece of work (probing and planning one video): checked between steps, so a file that
would take forever becomes a `Timeout` error row instead of stalling the run."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from vidbatch.core.errors import Timeout


def _now() -> float:
    return time.monotonic()


@dataclass
class Deadline:
    seconds: float | None  # None: no budget
    setting: str = "probe.timeout_s"  # the config field that sets it, named in the error
    started: float = field(default_factory=lambda: _now())

    def remaining(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.started + self.seconds - _now())

    def expired(self) -> bool:
        return self.seconds is not None and _now() > self.started + self.seconds

    def check(self, doing: str) -> None:
        if self.expired():
            raise Timeout(f"over the {self.seconds:g} s budget ({self.setting}) while {doing}")
