"""The section runner: the report on disk after every section, failures and budgets recorded,
a killed run leaving a valid JSON with what it finished."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qvggt_deploy.bench.sections import SIGTERM_EXIT, Section, SectionRunner

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the sections advance by hand."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_report_on_disk_after_each_section_and_a_failure_does_not_stop_the_next(tmp_path):
    out = tmp_path / "r.json"
    seen = []

    def first(ctx):
        seen.append(json.loads(out.read_text()))  # written before the first section ran
        return {"x": 1}

    def second(ctx):
        seen.append(json.loads(out.read_text()))
        raise RuntimeError("boom")

    def third(ctx):
        seen.append(json.loads(out.read_text()))
        return [3]

    report = SectionRunner(out, {"command": "t"}).run(
        [Section("a", first, 10), Section("b", second, 10), Section("c", third, 10)])
    assert [s["sections"]["a"]["status"] for s in seen] == ["running", "ok", "ok"]
    assert seen[1]["a"] == {"x": 1} and seen[2]["sections"]["b"]["status"] == "failed"
    assert [seen[0]["sections"][n]["status"] for n in "bc"] == ["not-run", "not-run"]
    on_disk = json.loads(out.read_text())
    assert on_disk == report
    assert [on_disk["sections"][n]["status"] for n in "abc"] == ["ok", "failed", "ok"]
    assert "RuntimeError('boom')" == on_disk["sections"]["b"]["error"] and "boom" in on_disk["sections"]["b"]["traceback"]
    assert on_disk["c"] == [3] and on_disk["command"] == "t"


def test_a_failed_section_keeps_what_it_saved_and_its_dependents_do_not_run(tmp_path):
    def partial(ctx):
        rows = []
        for i in ctx.iterate(range(5)):
            if i == 3:
                raise ValueError("row 3")
            rows.append(i)
            ctx.save(rows)

    report = SectionRunner(tmp_path / "r.json").run(
        [Section("rows", partial, 10), Section("after", lambda ctx: 1, 10, needs=("rows",))])
    assert report["rows"] == [0, 1, 2] and report["sections"]["rows"]["progress"]["done"] == 3
    assert report["sections"]["after"] == {"status": "not-run", "budget_s": 10, "reason": "needs rows (failed)"}


def test_a_section_stops_at_its_budget_and_says_how_far_it_got(tmp_path):
    clock = Clock()

    def slow(ctx):
        rows = []
        for i in ctx.iterate(range(10), "shapes"):
            clock.t += 3.0  # each item takes 3 s of a 10 s budget
            rows.append(i)
            ctx.save(rows)
        return rows

    report = SectionRunner(tmp_path / "r.json", clock=clock).run([Section("gemm", slow, 10)])
    entry = report["sections"]["gemm"]
    assert entry["status"] == "over-budget"
    assert report["gemm"] == [0, 1, 2]  # a fourth would have ended at 12 s
    assert entry["progress"] == {"unit": "shapes", "done": 3, "total": 10, "stopped_before": 3}
    assert entry["wall_s"] == 9.0


def test_the_total_budget_caps_sections_and_skips_those_that_cannot_start(tmp_path):
    clock = Clock()

    def spend(seconds):
        def run(ctx):
            clock.t += seconds
            return ctx.budget_s
        return run

    report = SectionRunner(tmp_path / "r.json", total_s=100, clock=clock).run(
        [Section("a", spend(70), 80), Section("b", spend(5), 60), Section("c", spend(1), 60, min_s=30),
         Section("d", spend(1), 60, skip="--skip-d")])
    assert report["a"] == 80 and report["b"] == 30  # b gets what is left of the 100 s
    assert report["sections"]["c"]["status"] == "skipped-over-budget" and "c" not in report
    assert "25 s left" in report["sections"]["c"]["reason"]
    assert report["sections"]["d"] == {"status": "not-run", "budget_s": 60, "reason": "--skip-d"}


def test_derived_keys_follow_the_data_and_their_failure_is_not_fatal(tmp_path):
    def derive(report):
        return {"double": 2 * report["a"]} if "b" not in report else {"oops": 1 / 0}

    report = SectionRunner(tmp_path / "r.json", derive=derive).run(
        [Section("a", lambda ctx: 21, 1), Section("b", lambda ctx: 0, 1)])
    assert report["double"] == 42 and "ZeroDivisionError" in report["derive_error"]


def test_resume_keeps_ok_sections_the_caller_accepts(tmp_path):
    calls = []

    def run(name):
        def f(ctx):
            calls.append(name)
            return {"file": name}
        return f

    previous = {"sections": {"a": {"status": "ok", "wall_s": 5.0}, "b": {"status": "ok"}, "c": {"status": "failed"}},
                "a": {"file": "a"}, "b": {"file": "gone"}, "c": None}
    keep = lambda data: data["file"] != "gone"  # noqa: E731
    report = SectionRunner(tmp_path / "r.json", previous=previous).run(
        [Section(n, run(n), 10, keep=keep) for n in "abc"])
    assert calls == ["b", "c"]
    assert report["sections"]["a"]["resumed"] is True and report["sections"]["a"]["wall_s"] == 5.0
    assert [report["sections"][n]["status"] for n in "abc"] == ["ok", "ok", "ok"]


KILL_SCRIPT = """
import os, signal, sys, time
from qvggt_deploy.bench.sections import Section, SectionRunner

def third(ctx):
    ctx.save({"partial": True})
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    time.sleep(30)

SectionRunner(sys.argv[1]).run([Section("one", lambda ctx: 1, 60), Section("two", lambda ctx: [2], 60),
                                 Section("three", third, 60), Section("four", lambda ctx: 4, 60)])
"""


@pytest.mark.parametrize("sig, status, code", [("SIGKILL", "running", -signal.SIGKILL),
                                               ("SIGTERM", "killed", SIGTERM_EXIT)])
def test_a_run_killed_in_section_3_leaves_sections_1_and_2(tmp_path, sig, status, code):
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(out), sig], env=env, timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == code, proc.stderr
    report = json.loads(out.read_text())
    assert (report["one"], report["two"]) == (1, [2]) and report["three"] == {"partial": True}
    assert [report["sections"][n]["status"] for n in ("one", "two", "three", "four")] == ["ok", "ok", status, "not-run"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
