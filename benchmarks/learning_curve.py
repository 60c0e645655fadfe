"""Learning curve of training runs: losses from log.jsonl, metrics of the weight snapshots.

Evaluates every ``snapshots/step_*.safetensors`` of one or more run folders with
:func:`qvggt_deploy.metrics.evaluate_model` on held-out generated scenes, writes a JSON, and
optionally plots loss and metrics against the step (matplotlib). A run is ``DIR[:OFFSET[:UPTO]]``:
a second stage started from another run's step OFFSET is drawn after it; UPTO drops later steps.

    python benchmarks/learning_curve.py runs/tiny_v2::3200 runs/tiny_v3:3200 --scenes 16 \
        --seed 100000 --json docs/results/learning_curve.json --plot docs/results/learning_curve.png
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEYS = ("auc@30", "abs_rel", "chamfer", "depthcam_chamfer", "rre_deg", "rte_deg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="DIR[:OFFSET[:UPTO]] training output folders")
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--seed", type=int, default=100000, help="eval seed offset (10^9 + SEED + i)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()

    import torch

    from qvggt_deploy.metrics.evaluate import eval_scenes, evaluate_model, torch_model_fn
    from qvggt_deploy.model import build_model, get_preset, load_checkpoint

    torch.set_num_threads(args.threads)
    points, loss, base = [], [], {}
    for spec in args.runs:
        parts = spec.split(":")
        run = Path(parts[0])
        offset = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        upto = int(parts[2]) if len(parts) > 2 and parts[2] else None
        cfg = json.loads((run / "config.json").read_text())
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
        loss += [{"run": str(run), **{k: r[k] for k in ("loss", "loss_camera", "loss_depth", "loss_point",
                                                         "image_size", "elapsed_s") if k in r},
                  "step": r["step"] + offset} for r in log if upto is None or r["step"] <= upto]
        for snap in sorted((run / "snapshots").glob("step_*.safetensors")):
            step = int(re.search(r"step_(\d+)", snap.name).group(1))
            if upto is not None and step > upto:
                continue
            model = build_model(get_preset(cfg["preset"]).replace(enable_track=cfg.get("weight_track", 0) > 0 or cfg.get("enable_track", False)))
            load_checkpoint(snap, model)
            size = model.cfg.img_size
            res = evaluate_model(torch_model_fn(model), eval_scenes(args.scenes, args.frames, args.seed, (size, size)),
                                 total=args.scenes)
            points.append({"run": str(run), "step": step + offset, **{k: res["mean"].get(k) for k in KEYS}})
            base = {k: res["baselines"]["trivial"]["mean"].get(k) for k in KEYS}
            print(json.dumps(points[-1]), flush=True)
    result = {"runs": args.runs, "scenes": args.scenes, "frames": args.frames, "seed": args.seed,
              "baseline": base, "snapshots": points, "loss": loss}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(result, args.plot)
    return 0


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    loss = result["loss"]
    steps = [r["step"] for r in loss]
    window = 20
    smooth = lambda xs: [sum(xs[max(0, i - window):i + 1]) / len(xs[max(0, i - window):i + 1]) for i in range(len(xs))]  # noqa: E731
    for key in ("loss_camera", "loss_depth", "loss_point"):  # unweighted parts (stages may weight them differently)
        axes[0].plot(steps, smooth([r[key] for r in loss]), label=key)
    switch = next((r["step"] for r in loss if r.get("image_size") != loss[0].get("image_size")), None)
    axes[0].set_title("training losses (moving average)")
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=7)
    snaps = result["snapshots"]
    for ax, key, title in ((axes[1], "auc@30", "camera AUC@30 (higher better)"),
                           (axes[2], "abs_rel", "depth AbsRel (lower better)"),
                           (axes[3], "chamfer", "Chamfer, m (lower better)")):
        ax.plot([p["step"] for p in snaps], [p[key] for p in snaps], "o-", label="model")
        if key == "chamfer":
            ax.plot([p["step"] for p in snaps], [p["depthcam_chamfer"] for p in snaps], "s--", label="depth+camera")
        if result["baseline"].get(key) is not None:
            ax.axhline(result["baseline"][key], color="gray", ls=":", label="trivial baseline")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in axes:
        if switch:
            ax.axvline(switch, color="k", lw=0.5, alpha=0.4)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
