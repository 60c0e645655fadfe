"""Wall seconds per calibration phase, so a slow calibration says where its time goes.

    phases = PhaseClock()
    with phases("scale search"):
        ...
    phases.seconds  # {"scale search": 1.2, ...} in first-use order

Nested phases are not subtracted from the outer one: time them side by side.
"""
from __future__ import annotations

import contextlib
import time
from typing import Dict, Iterator


class PhaseClock:
    """Accumulates wall seconds per named phase."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def add(self, other: "PhaseClock") -> None:
        for k, v in other.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v

    def summary(self) -> str:
        """``name 1.2 s, other 3.4 s`` (first-use order)."""
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())

