"""One benchmark measurement, run in its own process (``python -m qvggt_deploy.bench.worker``).

A fresh process per variant makes the peak RSS honest: ``ru_maxrss`` of this process covers the
interpreter, the runtime, loading the model and every inference, and nothing of the other
variants. Prints one JSON object on the last line of stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from qvggt_deploy.procstats import current_rss_bytes, peak_rss_bytes


def current_rss() -> int:
    """Resident bytes of this process now; -1 where it cannot be read."""
    now = current_rss_bytes()
    return -1 if now is None else now


def model_bytes(path: Path) -> int:
    data = path.with_name(f"{path.name}.data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m qvggt_deploy.bench.worker")
    p.add_argument("--backend", choices=["ort", "torch", "trt"], required=True)
    p.add_argument("--model", help="ort: the .onnx file; trt: the .engine file")
    p.add_argument("--cuda-graph", action="store_true", help="trt: time CUDA-graph launches")
    p.add_argument("--layers", type=int, default=20, help="trt: slowest layers to report (0: no profiling)")
    p.add_argument("--tegrastats", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--plugin", default=None, help="trt: plugin library (default: the sidecar's)")
    p.add_argument("--interleave", nargs="+", default=None, metavar="FILE",
                   help="ort: load every FILE and alternate their timed runs (fair latency ratios on a shared "
                        "machine; peak RSS is then the sum and not reported per file)")
    p.add_argument("--accuracy-level", type=int, default=0)
    p.add_argument("--no-arena", action="store_true", help="ort: disable the CPU memory arena")
    p.add_argument("--arena-extend", default="power_of_two", choices=["power_of_two", "requested"])
    p.add_argument("--preset")
    p.add_argument("--checkpoint")
    p.add_argument("--recipe")
    p.add_argument("--allow-random-weights", action="store_true")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)

    if args.interleave:
        return interleaved(args)
    if args.backend == "trt":
        from qvggt_deploy.bench.trt import measure_engine
        from qvggt_deploy.errors import QvggtError

        try:
            result = measure_engine(args.model, args.frames, args.warmup, args.runs, cuda_graph=args.cuda_graph,
                                    layers=args.layers, tegrastats=args.tegrastats, plugin_library=args.plugin)
        except QvggtError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        result.update({"peak_rss_bytes": peak_rss_bytes(), "rss_after_load_bytes": current_rss(), "threads": args.threads,
                       "recipe": None, "torch_imported": "torch" in sys.modules})
        print(json.dumps(result))
        return 0
    start = time.perf_counter()
    if args.backend == "ort":  # no torch in this process: its RSS is ONNX Runtime's alone
        from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx

        sess = SessionFromOnnx(args.model, accuracy_level=args.accuracy_level, threads=args.threads,
                               mem_arena=not args.no_arena, arena_extend=args.arena_extend)()
        name = sess.get_inputs()[0].name
        height, width = sess.get_inputs()[0].shape[2:4]
        run = lambda x: sess.run(None, {name: x})  # noqa: E731
        size = model_bytes(Path(args.model))
    else:
        import torch

        from qvggt_deploy.backends.torch.loader import ModelFromPreset
        from qvggt_deploy.quant.recipe import load_recipe

        recipe = load_recipe(args.recipe) if args.recipe else None
        model = ModelFromPreset(args.preset, args.checkpoint, recipe, threads=args.threads,
                                allow_random=args.allow_random_weights)()
        height, width = args.height, args.width

        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(x))

        # A fake-quantized model holds fp32 weights: its deployed size is the exported file's.
        size = None if recipe is not None else int(sum(
            t.numel() * t.element_size() for n, t in model.state_dict().items() if not n.startswith("track_head")))
    load_seconds = time.perf_counter() - start
    rss_loaded = current_rss()
    images = np.random.default_rng(0).random((args.frames, 3, height, width), dtype=np.float32)
    for _ in range(args.warmup):
        run(images)
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - t)
    result = {
        "backend": args.backend, "model": args.model, "recipe": args.recipe, "frames": args.frames,
        "height": height, "width": width, "threads": args.threads, "accuracy_level": args.accuracy_level, "mem_arena": not args.no_arena, "arena_extend": args.arena_extend,
        "load_seconds": load_seconds, "latencies": times, "median": float(np.median(times)),
        "p90": float(np.percentile(times, 90)), "peak_rss_bytes": peak_rss_bytes(), "rss_after_load_bytes": rss_loaded,
        "model_bytes": size,
    }
    result["torch_imported"] = "torch" in sys.modules
    print(json.dumps(result))
    return 0


def interleaved(args) -> int:
    """Round-robin timing of several ORT files in one process: run r of every file, then run r+1..."""
    from qvggt_deploy.backends.onnxrt.loader import SessionFromOnnx

    sessions = []
    for path in args.interleave:
        sess = SessionFromOnnx(path, accuracy_level=args.accuracy_level, threads=args.threads,
                               mem_arena=not args.no_arena, arena_extend=args.arena_extend)()
        inp = sess.get_inputs()[0]
        sessions.append((path, sess, inp.name, inp.shape[2:4]))
    height, width = sessions[0][3]
    images = np.random.default_rng(0).random((args.frames, 3, height, width), dtype=np.float32)
    for _, sess, name, _ in sessions:
        for _ in range(args.warmup):
            sess.run(None, {name: images})
    times = {path: [] for path, *_ in sessions}
    for _ in range(args.runs):
        for path, sess, name, _ in sessions:
            t = time.perf_counter()
            sess.run(None, {name: images})
            times[path].append(time.perf_counter() - t)
    print(json.dumps({"interleaved": {path: {"latencies": v, "median": float(np.median(v)),
                                             "p90": float(np.percentile(v, 90))} for path, v in times.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
