"""The training go/no-go check on finished checkpoints, side by side.

Held-out camera figures beside the priors', the global-attention match ratio and (for a trained
track head) its pixel error: :func:`qvggt_deploy.train.pose_probe.camera_go_no_go` on the 16
fixed go/no-go scenes, for each ``NAME=CHECKPOINT`` given (full checkpoints, or
snapshots of runs trained without the track head).

    python benchmarks/go_no_go.py shipped=qvggt_deploy/assets/vggt_tiny.safetensors \\
        run=runs/X/snapshots/step_0000600.safetensors [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="NAME=PATH of tiny checkpoints")
    parser.add_argument("--untrained-track-head", action="append", default=[],
                        help="NAME whose track head was not trained (its pixel error is then left out)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from qvggt_deploy.errors import QvggtError
    from qvggt_deploy.model import build_model, get_preset, load_checkpoint
    from qvggt_deploy.train.pose_probe import camera_go_no_go

    torch.set_num_threads(args.threads)
    out = {}
    for item in args.checkpoints:
        name, _, path = item.partition("=")
        model = build_model("tiny")
        try:
            load_checkpoint(path, model)
        except QvggtError:  # a snapshot of a run trained without the track head
            model = build_model(get_preset("tiny").replace(enable_track=False))
            load_checkpoint(path, model)
        if name in args.untrained_track_head:
            model.track_head = None
        out[name] = {"checkpoint": path, **camera_go_no_go(model.eval())}
        print(name, json.dumps(out[name]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
