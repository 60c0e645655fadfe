"""Frames per second of the synthetic scene renderer (qvggt_deploy.data.synthetic).

Times ``generate_scene`` end to end (scene sampling, ray casting, textures, ground truth) over
several seeds after one warm-up scene, and reports the median per-scene rate. The machine is
shared, so the load average is recorded with the result.

    python benchmarks/renderer_fps.py --size 224 --frames 4 --scenes 10 --threads 2 --json benchmarks/results/renderer_fps.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from qvggt_deploy.data.synthetic import GENERATOR_VERSION, SceneConfig, generate_scene

    torch.set_num_threads(args.threads)
    cfg = SceneConfig(frames=args.frames, image_size=(args.size, args.size))
    generate_scene(0, cfg)  # warm-up
    per_scene = []
    for seed in range(1, args.scenes + 1):
        start = time.perf_counter()
        generate_scene(seed, cfg)
        per_scene.append(time.perf_counter() - start)
    median = statistics.median(per_scene)
    result = {
        "benchmark": "renderer_fps", "generator_version": GENERATOR_VERSION,
        "image_size": [args.size, args.size], "frames_per_scene": args.frames, "scenes": args.scenes,
        "threads": args.threads, "median_seconds_per_scene": round(median, 4),
        "fps_median": round(args.frames / median, 1), "fps_best": round(args.frames / min(per_scene), 1),
        "loadavg_1min_at_end": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
