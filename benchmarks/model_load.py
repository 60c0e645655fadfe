"""Peak RSS and wall time of building VGGT-1B, loading its checkpoint, and one forward pass.

Each step runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own. Writes JSON.

    python benchmarks/model_load.py --preset vggt-1b --frames 2 --size 518 --json benchmarks/results/model_load.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STEPS = {
    "build": """
import time, torch
from qvggt_deploy.model import build_model
t = time.perf_counter(); m = build_model(PRESET); dt = time.perf_counter() - t
""",
    "save": """
import time, torch
from qvggt_deploy.model import build_model, save_checkpoint
m = build_model(PRESET)
t = time.perf_counter(); save_checkpoint(m, CKPT); dt = time.perf_counter() - t
""",
    "load": """
import time, torch
from qvggt_deploy.model import build_model, load_checkpoint
t = time.perf_counter(); m = build_model(PRESET, device="meta"); load_checkpoint(CKPT, m); dt = time.perf_counter() - t
""",
    "forward": """
import time, torch
from qvggt_deploy.model import build_model, load_checkpoint
m = build_model(PRESET, device="meta"); load_checkpoint(CKPT, m)
x = torch.rand(FRAMES, 3, SIZE, SIZE)
with torch.inference_mode():
    m(x)  # warm-up (first runs are up to 2x slower)
    t = time.perf_counter(); m(x); dt = time.perf_counter() - t
""",
}

TAIL = """
import json
from qvggt_deploy.procstats import peak_rss_bytes
print(json.dumps({"seconds": dt, "peak_rss_gb": peak_rss_bytes() / 2**30}))  # GiB, as the committed results
"""


def run_step(name: str, preset: str, ckpt: str, frames: int, size: int) -> dict:
    code = (f"PRESET={preset!r}; CKPT={ckpt!r}; FRAMES={frames}; SIZE={size}\n"
            + STEPS[name] + TAIL)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    if res.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vggt-1b")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--workdir", default=None, help="where the temporary checkpoint goes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        ckpt = str(Path(tmp) / "model.safetensors")
        results = {}
        for step in ("build", "save", "load", "forward"):
            results[step] = run_step(step, args.preset, ckpt, args.frames, args.size)
            if step == "save":
                results["checkpoint_gb"] = Path(ckpt).stat().st_size / 2**30
            print(step, results[step], flush=True)
    results["load_rss_over_checkpoint"] = results["load"]["peak_rss_gb"] / results["checkpoint_gb"]
    results["meta"] = {"preset": args.preset, "frames": args.frames, "size": args.size,
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "cpu_count": os.cpu_count(), "machine": platform.machine(),
                       "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(results, indent=2))
    if args.json:
        from qvggt_deploy.fileio import write_json

        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
