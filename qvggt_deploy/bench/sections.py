"""A report written section by section, so that a run killed half way keeps what it measured.

:class:`SectionRunner` runs named sections in order, each under a wall-clock budget (its own,
capped by what is left of the run's total), and replaces the whole JSON report atomically
(:func:`qvggt_deploy.fileio.write_json`) before the first section, when each section starts and
ends, and whenever a section saves progress. ``report["sections"][name]["status"]`` says what
became of each section:

- ``not-run``: not reached (a killed run leaves the rest so), not selected, or a section it needs
  did not succeed (``reason`` says which);
- ``running``: started and never finished: the process died in it (what it saved is kept);
- ``ok``; ``failed``: it raised (``error``, ``traceback``; what it saved is kept);
- ``over-budget``: it stopped early at its budget; ``progress`` says how far it got;
- ``skipped-over-budget``: less than its minimum time was left of the total, so it never started;
- ``killed``: SIGTERM arrived while it ran (``timeout`` sends one), the run then exits 143.

Only the standard library and :mod:`qvggt_deploy.fileio` are imported: ``benchmarks/gpu_check.py``
runs on machines with nothing but a CUDA PyTorch.
"""
from __future__ import annotations

import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from qvggt_deploy.fileio import write_json

STATUSES = ("not-run", "running", "ok", "failed", "over-budget", "skipped-over-budget", "killed")
DONE = ("ok", "over-budget")  # a section whose data later sections may use
SIGTERM_EXIT = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread by the runner's handler)."""


@dataclass
class Section:
    """One step of a run.

    Args:
        name: key of the section's data in the report and of its entry in ``report["sections"]``.
        run: ``run(ctx) -> data``; ``ctx`` is the :class:`SectionContext` (budget, progress).
        budget_s: wall seconds it may take (capped by what is left of the total).
        min_s: it is not started with less than this left of the total. Defaults to 0.
        needs: sections that must have ended ``ok`` or ``over-budget`` first. Defaults to none.
        skip: a reason not to run it at all (e.g. "--skip-e2e"). Defaults to None.
        keep: ``keep(previous_data) -> bool``: with a previous report, an ``ok`` section whose
            data passes is kept instead of rerun (resuming). Defaults to None (always rerun).
    """

    name: str
    run: Callable[["SectionContext"], Any]
    budget_s: float
    min_s: float = 0.0
    needs: Sequence[str] = ()
    skip: Optional[str] = None
    keep: Optional[Callable[[Any], bool]] = None


class SectionContext:
    """What a running section sees: its budget, and a way to save partial data."""

    def __init__(self, runner: "SectionRunner", name: str, budget_s: float):
        self._runner = runner
        self.name = name
        self.budget_s = budget_s
        self.start = runner.clock()
        self.data: Any = None
        self.progress: Dict[str, Any] = {}
        self.stopped_early = False

    def elapsed(self) -> float:
        return self._runner.clock() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def save(self, data: Any = None, **progress) -> None:
        """Record ``data`` (if given) and progress facts, and rewrite the report."""
        if data is not None:
            self.data = data
        self.progress.update(progress)
        self._runner._record_partial(self)

    def iterate(self, items: Iterable, what: str = "items") -> Iterator:
        """Yield ``items`` while the budget allows one more, saving after each.

        Stops early (``stopped_early``; the section ends ``over-budget``) when the time left is
        less than the longer of the last item's and the mean item's duration, or is gone.
        """
        items = list(items)
        durations: List[float] = []
        self.progress.update({"unit": what, "done": 0, "total": len(items)})
        for i, item in enumerate(items):
            if durations:
                expected = max(durations[-1], sum(durations) / len(durations))
                if self.left() < expected:
                    self.stopped_early = True
                    self.save(stopped_before=i)
                    return
            elif self.left() <= 0:
                self.stopped_early = True
                self.save(stopped_before=i)
                return
            t0 = self._runner.clock()
            yield item
            durations.append(self._runner.clock() - t0)
            self.save(done=i + 1)


class SectionRunner:
    """Run sections in order, writing ``path`` (the whole report) after every change.

    Args:
        path: the JSON report.
        header: report keys written first (command, environment, ...).
        total_s: wall seconds for the whole run; each section gets ``min(budget_s, left)``.
        derive: ``derive(report) -> dict`` of keys recomputed before every write (ratios,
            targets); its failure is recorded under ``derive_error``, never fatal.
        previous: a previous report of the same run, to resume from (see :attr:`Section.keep`).
        log: one-line progress messages (e.g. ``print`` to stderr). Defaults to none.
        clock: seconds, monotonic. Defaults to :func:`time.monotonic`.
    """

    def __init__(self, path, header: Optional[Dict[str, Any]] = None, total_s: float = float("inf"),
                 derive: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
                 previous: Optional[Dict[str, Any]] = None, log: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.report: Dict[str, Any] = dict(header or {})
        self.total_s = total_s
        self.derive = derive
        self.previous = previous or {}
        self.log = log or (lambda _msg: None)
        self.clock = clock
        self.start = clock()
        self._current: Optional[SectionContext] = None

    def left(self) -> float:
        return self.total_s - (self.clock() - self.start)

    def status(self, name: str) -> Optional[str]:
        return self.report.get("sections", {}).get(name, {}).get("status")

    def write(self) -> None:
        """Recompute the derived keys and replace the report file."""
        if self.derive is not None:
            try:
                self.report.update(self.derive(self.report))
                self.report.pop("derive_error", None)
            except Exception as exc:  # a bug in the ratios must not cost the measurements
                self.report["derive_error"] = repr(exc)
        self.report["wall_s"] = self.clock() - self.start
        write_json(self.path, self.report)

    def run(self, sections: Sequence[Section]) -> Dict[str, Any]:
        """Run ``sections``; returns the report (also on disk). SIGTERM ends the run with
        :data:`SIGTERM_EXIT` after recording the section it interrupted as ``killed``."""
        entries = self.report.setdefault("sections", {})
        for section in sections:
            entries[section.name] = {"status": "not-run", "budget_s": section.budget_s}
            if section.skip:
                entries[section.name]["reason"] = section.skip
        self.write()
        restore = self._install_sigterm()
        try:
            for section in sections:
                self._run_one(section)
        except Terminated:
            ctx = self._current
            if ctx is not None:
                self._finish(ctx, "killed", error="SIGTERM (the run was stopped, e.g. by timeout)")
            raise SystemExit(SIGTERM_EXIT) from None
        finally:
            restore()
        return self.report

    # ---- one section ----------------------------------------------------------------------------
    def _run_one(self, section: Section) -> None:
        entry = self.report["sections"][section.name]
        if section.skip:
            return
        prev_entry = self.previous.get("sections", {}).get(section.name, {})
        if (section.keep is not None and prev_entry.get("status") == "ok" and section.name in self.previous
                and section.keep(self.previous[section.name])):
            self.report[section.name] = self.previous[section.name]
            entry.update({k: v for k, v in prev_entry.items() if k != "budget_s"}, resumed=True)
            self.log(f"{section.name}: kept from the previous report")
            self.write()
            return
        unmet = [n for n in section.needs if self.status(n) not in DONE]
        if unmet:
            entry["reason"] = f"needs {unmet[0]} ({self.status(unmet[0]) or 'unknown'})"
            self.write()
            return
        left = self.left()
        if left < max(section.min_s, 1e-9):
            entry.update(status="skipped-over-budget",
                         reason=f"{max(left, 0):.0f} s left of the total, it needs at least {section.min_s:.0f} s")
            self.log(f"{section.name}: skipped, over the total budget")
            self.write()
            return
        ctx = SectionContext(self, section.name, min(section.budget_s, left))
        entry.update(status="running", budget_s=ctx.budget_s)
        self._current = ctx
        self.log(f"{section.name} ... (budget {ctx.budget_s:.0f} s)")
        self.write()
        try:
            data = section.run(ctx)
        except Exception as exc:
            self._finish(ctx, "failed", error=repr(exc), traceback=traceback.format_exc())
            self.log(f"{section.name} FAILED: {exc!r}")
            return
        if data is not None:
            ctx.data = data
        self._finish(ctx, "over-budget" if ctx.stopped_early else "ok")
        self.log(f"{section.name}: {self.status(section.name)} in {ctx.elapsed():.1f} s")

    def _record_partial(self, ctx: SectionContext) -> None:
        if ctx.data is not None:
            self.report[ctx.name] = ctx.data
        entry = self.report["sections"][ctx.name]
        entry["wall_s"] = ctx.elapsed()
        if ctx.progress:
            entry["progress"] = dict(ctx.progress)
        self.write()

    def _finish(self, ctx: SectionContext, status: str, **extra) -> None:
        self._current = None
        entry = self.report["sections"][ctx.name]
        entry.update(status=status, **extra)
        self._record_partial(ctx)

    def _install_sigterm(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(_signum, _frame):
            raise Terminated()

        old = signal.signal(signal.SIGTERM, handler)
        return lambda: signal.signal(signal.SIGTERM, old)
