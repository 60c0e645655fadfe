"""Seconds per training step of the tiny model at 224 px, for ways of spending this machine's cores.

    python benchmarks/train_throughput.py [--steps 40] [--timed-from 10] [--json FILE]

Why: rendering a step's scenes takes about as long as the step's forward and backward on one CPU
thread; this measures whether rendering ahead in a worker process (``qvggt train --workers 1``)
uses a second core better than torch's second thread does. Each setting
is a short continuation of the embedded model with stage 7's loss (the same seed, so the same
batches), run one after the other on a quiet machine; steps before ``--timed-from`` (start-up)
are not timed. The JSON holds each setting's seconds per step, the ratio to the first, and the
CPU (model, flags, cores): compare only figures of one run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from qvggt_deploy.fileio import write_json  # noqa: E402
from qvggt_deploy.procstats import cpu_info  # noqa: E402
from gpu_train import ASSET, stage7_config  # noqa: E402

SETTINGS = {  # name: (torch threads, rendering workers)
    "1 thread, rendering in the loop": (1, 0),
    "1 thread + 1 rendering worker": (1, 1),
    "2 threads, rendering in the loop": (2, 0),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="steps per setting. Defaults to 40.")
    parser.add_argument("--timed-from", type=int, default=10, help="first timed step. Defaults to 10.")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (replaced whole)")
    args = parser.parse_args(argv)
    from qvggt_deploy.train.loop import logged_seconds_per_step, train

    rows = []
    for name, (threads, workers) in SETTINGS.items():
        torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            cfg = stage7_config(steps=args.steps, lr=1e-4, warmup=args.steps, seed=30, init_from=str(ASSET),
                              log_every=5, ckpt_every=10 ** 9)
            train(cfg, tmp, resume=False, workers=workers)
            rows.append({"setting": name, "threads": threads, "workers": workers,
                         "seconds_per_step": logged_seconds_per_step(Path(tmp) / "log.jsonl", args.timed_from),
                         "wall_s": time.perf_counter() - t0})
        rows[-1]["ratio_to_first"] = rows[0]["seconds_per_step"] / rows[-1]["seconds_per_step"]
        print(f"{name:36s} {rows[-1]['seconds_per_step']:.3f} s/step  ({rows[-1]['ratio_to_first']:.2f}x)")
    report = {"benchmark": "train_throughput", "steps": args.steps, "timed_from": args.timed_from,
              "image_size": 224, "batch": 2, "cpu": cpu_info(), "torch": torch.__version__, "rows": rows}
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
