"""Measure PyTorch CPU peak activation memory of VGGT, to calibrate ``qvggt_deploy.trt.memory``.

Peak resident memory (VmHWM) is reset through ``/proc/self/clear_refs`` before each forward, so
one process (one model build) measures several frame counts. Activation memory = peak RSS during
the forward minus the RSS with only the model loaded. Random weights (shapes are what matter).

    python scripts/measure_memory.py --preset tiny --frames 1 2 4 8
    python scripts/measure_memory.py --preset vggt-1b --height 350 --width 518 --frames 1 2

Prints one JSON document; docs/jetson.md records the numbers used by the memory model.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import time


def _rss_mib(field: str) -> float:
    text = open("/proc/self/status", encoding="ascii").read()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024.0


def _reset_peak() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def main() -> None:
    import torch

    from qvggt_deploy.model import build_model, get_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset).replace(enable_track=False)
    H = args.height or cfg.img_size
    W = args.width or cfg.img_size
    model = build_model(cfg)
    _reset_peak()
    base = _rss_mib("VmRSS")
    params = sum(p.numel() for p in model.parameters())
    out = {"preset": cfg.name, "height": H, "width": W, "threads": args.threads,
           "params": params, "rss_model_mib": round(base, 1), "runs": []}
    for part in ("aggregator", "full"):
        for S in args.frames:
            images = torch.rand(1, S, 3, H, W)
            _reset_peak()
            start_rss = _rss_mib("VmRSS")
            t0 = time.perf_counter()
            with torch.no_grad():
                if part == "aggregator":
                    result = model.aggregator(images)
                else:
                    result = model(images)
            seconds = time.perf_counter() - t0
            peak = _rss_mib("VmHWM")
            del result
            out["runs"].append({"part": part, "frames": S, "peak_rss_mib": round(peak, 1),
                                "activation_mib": round(peak - base, 1),
                                "rss_before_mib": round(start_rss, 1), "seconds": round(seconds, 2)})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
