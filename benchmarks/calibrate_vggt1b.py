"""Calibration of VGGT-1B on this machine: peak memory and wall time (a benchmark, not a test).

Runs ``qvggt calibrate`` in-process on the ``vggt-1b`` preset with random weights (the real
checkpoint is not needed to measure memory and time: shapes are what matter), 2 frames at
518x518, a few generated scenes, and records the peak resident set size (``ru_maxrss``) and the
wall time into ``benchmarks/results/calibrate_vggt1b.json``.

The method configuration is chosen to be cheap on 2 CPU cores (see DEFAULT_ARGS): AWQ scale and
clip search with a 4-point exponent grid, token filtering with compensation rows, no task-aware
head supervision (it would run the 1B model's DPT heads at 518x518 for every candidate).
Run it niced when the machine is quiet::

    nice -n 10 python benchmarks/calibrate_vggt1b.py [--scenes 2] [extra calibrate options]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_ARGS = ["--preset", "vggt-1b", "--allow-random-weights", "--frames", "2", "--image-size", "518", "--method", "qvggt",
                "--no-task-search", "--group", "128", "--grid", "4", "--max-rows", "2048"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=2, help="generated calibration scenes. Defaults to 2.")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "calibrate_vggt1b.json"))
    args, extra = parser.parse_known_args()

    os.environ.setdefault("QVGGT_NO_PROGRESS", "1")
    import torch

    from qvggt_deploy.cli.main import main as qvggt
    from qvggt_deploy.procstats import peak_rss_bytes

    with tempfile.TemporaryDirectory(prefix="qvggt-1b-") as tmp:
        out = Path(tmp) / "recipe"
        argv = ["calibrate", *DEFAULT_ARGS, "--synthetic", str(args.scenes), "--out", str(out), *extra]
        start = time.perf_counter()
        code = qvggt(argv)
        seconds = time.perf_counter() - start
        recipe_mb = sum(f.stat().st_size for f in out.glob("*")) / 1e6 if out.exists() else None
    peak_gib = peak_rss_bytes() / 2 ** 30
    result = {"command": "qvggt " + " ".join(a if "/" not in a else "<tmp>" for a in argv), "exit_code": code,
              "seconds": round(seconds, 1), "peak_rss_gib": round(peak_gib, 2), "recipe_mb": recipe_mb,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "machine": platform.machine(), "note": "random weights (shapes of VGGT-1B); fp32 model is 5.0 GB"}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
