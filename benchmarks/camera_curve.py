"""Camera go/no-go curve of training runs, from the held-out figures their logs hold.

``qvggt train --probe-every N`` writes, every N steps, the model's held-out camera figures beside
the priors' (16 fixed scenes, 4 frames, 224 px; :func:`qvggt_deploy.train.pose_probe.camera_go_no_go`).
This script collects them from one or more runs (``DIR[:OFFSET]``: a stage started at step OFFSET
of the run before it) into a JSON and a chart of rotation error and AUC@30 against the step.

    python benchmarks/camera_curve.py runs/geo1 runs/geo2:1400 --json docs/training/camera_curve.json \
        --plot docs/training/camera_curve.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_curve(run: str):
    path, _, offset = run.partition(":")
    rows = []
    for line in (Path(path) / "log.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "go_no_go" in record:
            rows.append({"run": path, "step": record["step"] + int(offset or 0), **record["go_no_go"]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="DIR[:OFFSET] training output folders")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    rows = [row for run in args.runs for row in read_curve(run)]
    if not rows:
        raise SystemExit("no go/no-go records in these runs (train with --probe-every)")
    for r in rows:
        print(f"step {r['step']:>6}  RRE {r['heldout_rre_deg']:6.2f} (identity {r['identity_rre_deg']:.2f}, median "
              f"{r['heldout_rre_median_deg']:.2f})  AUC@30 {r['heldout_auc30']:6.2f} (best prior {r['best_prior_auc30']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.runs, "curve": rows}, indent=1) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in rows]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        a.plot(steps, [r["heldout_rre_deg"] for r in rows], "o-", label="model, mean")
        a.plot(steps, [r["heldout_rre_median_deg"] for r in rows], "s--", label="model, median")
        a.plot(steps, [r["identity_rre_deg"] for r in rows], "k:", label="identity prior, mean")
        a.set_xlabel("step")
        a.set_ylabel("relative rotation error (deg)")
        a.legend()
        b.plot(steps, [r["heldout_auc30"] for r in rows], "o-", label="model")
        b.plot(steps, [r["best_prior_auc30"] for r in rows], "k:", label="best camera prior")
        b.set_xlabel("step")
        b.set_ylabel("AUC@30 (%)")
        b.legend()
        for ax in (a, b):
            ax.grid(alpha=0.3)
        fig.suptitle("held-out camera (16 scenes x 4 frames, 224 px)")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
