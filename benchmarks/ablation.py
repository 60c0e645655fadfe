"""The QVGGT ablation on the shipped tiny model: one command, committed results.

Runs ``qvggt ablate`` with the settings of ``benchmarks/results/ablation_tiny/ablation.{md,json}``:
the embedded trained ``tiny`` checkpoint, 8 generated calibration scenes x 4 frames, 64 held-out
generated evaluation scenes x 4 frames, INT4 group 32 (the tiny model's Linears have K = 128..1024;
group 128 would be per-channel for most of them), mixed-precision budget 5 bits per Linear weight.
Row results are cached in ``benchmarks/results/ablation_tiny.work/`` (rerun to resume; delete it
to start over; it is not committed). Extra arguments are passed on (e.g. ``--rows main``).

    nice -n 10 python benchmarks/ablation.py [--threads 1] [qvggt ablate options]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = ["--preset", "tiny", "--synthetic", "8", "--frames", "4", "--eval-scenes", "64", "--eval-frames", "4",
            "--group", "32", "--avg-bits", "5.0", "--out", str(ROOT / "benchmarks" / "results" / "ablation_tiny")]

if __name__ == "__main__":
    os.environ.setdefault("QVGGT_NO_PROGRESS", "1")
    from qvggt_deploy.cli.main import main

    sys.exit(main(["ablate", *SETTINGS, *sys.argv[1:]]))
