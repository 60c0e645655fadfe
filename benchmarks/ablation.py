"""The QVGGT ablation on the shipped tiny model: one command, committed results.

Runs ``qvggt ablate`` with the settings of ``benchmarks/results/ablation_tiny/ablation.{md,json,png}``:
the embedded trained ``tiny`` checkpoint, 8 generated calibration scenes x 4 frames, 256 held-out
generated evaluation scenes x 4 frames, group 128, the three settings (W4A16, W3A16, W4A8 with
static activation scales) with every row, weight-only rows also with fp16 activations. Before it
starts it prints what it will run and the expected cost (from the unit costs below, measured on
one thread). Row results are cached in ``benchmarks/results/ablation_tiny.work/`` (rerun to
resume; delete it to start over; it is not committed). Extra arguments are passed on, e.g.
``--settings w4 --rows fp32,awq,qvggt`` for a subset, ``--eval-scenes 64`` for a quicker run.

    nice -n 10 python benchmarks/ablation.py --threads 1 [qvggt ablate options]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "ablation_tiny"
DEFAULTS = {"--preset": "tiny", "--synthetic": "8", "--frames": "4", "--eval-scenes": "256", "--eval-frames": "4",
            "--group": "128", "--out": str(OUT)}

# Unit costs on the tiny model, one thread, seconds of a quiet core (CPU seconds of the process).
# Evaluation per scene of 4 frames (forward + metrics): 1.5-1.9 CPU s per scene measured with this
# script on 2 scenes (fp32, rtn and awq rows; a 2-core machine under a load of 7-8, which inflates
# CPU seconds a little); the previous ablation_tiny.json rows took 0.7-1.9 s wall. Calibration on
# 8 scenes: RTN 2.3 CPU s measured; AWQ 20 CPU s measured on 2 scenes, about 4x on 8 (39-53 s
# wall in the previous file); QVGGT at the current defaults 156 s (issue 13). Sensitivity: 20 units
# x 3-4 precisions x 8 scenes of forwards, ~0.5 s each.
EVAL_S_PER_SCENE = 1.5
CALIB_S = {"rtn": 4.0, "awq": 60.0, "qvggt": 156.0}
SENSITIVITY_S = 270.0

def _argv(extra):
    """DEFAULTS overridden by the same options in ``extra``, then the rest of ``extra``."""
    given = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
    if "--calib" in given:
        given.add("--synthetic")  # the two are exclusive
    argv = [x for k, v in DEFAULTS.items() if k not in given for x in (k, v)]
    return argv + list(extra)


def describe(argv):
    """What the run selects and the expected seconds (printed before it starts)."""
    from qvggt_deploy.quant.ablation import expected_cost, select

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--settings", default="all")
    p.add_argument("--rows", default="all")
    p.add_argument("--eval-scenes", type=int)
    p.add_argument("--group", type=int)
    a, _ = p.parse_known_args(argv)
    entries = select(a.settings.split(","), a.rows.split(","), a.group)
    cost = expected_cost(entries, a.eval_scenes, EVAL_S_PER_SCENE, CALIB_S, SENSITIVITY_S)
    hours = cost["total_seconds"] / 3600
    return (f"ablation: {cost['rows']} rows ({', '.join(e.name for e in entries)}), {cost['evaluations']} "
            f"evaluations of {a.eval_scenes} scenes; expected with the tiny model's unit costs on one quiet core: "
            f"{cost['eval_seconds'] / 60:.0f} min evaluation + {cost['calib_seconds'] / 60:.0f} min calibration + "
            f"{cost['sensitivity_seconds'] / 60:.0f} min sensitivity = {hours:.1f} h (cached rows are skipped)")


if __name__ == "__main__":
    from qvggt_deploy.cli.main import main

    argv = _argv(sys.argv[1:])
    print(describe(argv), file=sys.stderr, flush=True)
    sys.exit(main(["ablate", *argv]))
