"""Go/no-go for the track head: can it fit one batch of ground-truth tracks?

The track head alone (aggregator frozen at its seeded init) is trained on one batch of generated
scenes; its median pixel error on the visible tracks should fall well below the median true
motion (what a head that predicts no motion scores). A head that cannot do this has a bug; one
that can but does not learn in a full run lacks steps or signal.

    python benchmarks/track_overfit.py [--steps 150] [--size 112] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--size", type=int, default=112, help="image side (multiple of 14)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the curve here")
    args = parser.parse_args()

    import torch

    from qvggt_deploy.model import build_model
    from qvggt_deploy.train.data import Phase, make_batch
    from qvggt_deploy.train.tracks import query_tracks, track_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("tiny", seed=0).train()
    for p in model.aggregator.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.track_head.parameters(), lr=args.lr)
    batch = make_batch(1, 1, Phase(until=1.0, frames=(2,), batch=2, rotation=(5.0, 20.0)), args.size)
    gt = query_tracks(batch["world_points"], batch["mask"], batch["depth"], batch["extrinsics"], batch["intrinsics"],
                      64, torch.Generator().manual_seed(0))
    query = gt["query_points"]
    motion = (gt["tracks"][:, 1] - gt["tracks"][:, 0]).norm(dim=-1)[gt["visible"][:, 1]].median()
    curve, t0 = [], time.perf_counter()
    for step in range(args.steps):
        tokens, start = model.aggregator(batch["images"])
        tracks, vis, _ = model.track_head(tokens, batch["images"], start, query)
        loss = track_loss(tracks, vis, gt["tracks"], gt["visible"], args.size)
        optimizer.zero_grad()
        loss["loss_track"].backward()
        optimizer.step()
        curve.append(round(float(loss["track_px"]), 3))
    result = {"true_motion_px_median": round(float(motion), 3), "track_px_first": curve[0],
              "track_px_last": curve[-1], "steps": args.steps, "size": args.size, "lr": args.lr,
              "seconds": round(time.perf_counter() - t0, 1), "curve": curve}
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
