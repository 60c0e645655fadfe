"""Measure where dequantise + cuBLAS overtakes the fused W4A16 kernel, and write the dispatch table.

    python benchmarks/tune_dispatch.py OUT.json [--shapes 1024x3072 ...] [--m 256 1024 ...] [--header H]

Run from the repository root on a CUDA machine. For each weight shape (K x N) and each M it times
the library's fused route (``algo="fused"``) and its dequantise + cuBLAS route
(``algo="dequant_cublas"``) side by side (CUDA events, median of several batches), then writes
OUT.json: the committed table (``qvggt_deploy/ops/w4a16_dispatch.json``, or ``--base``) with this
GPU's architecture replaced by the measured thresholds (the smallest M from which cuBLAS wins by
2 % at that M and every larger measured M). The raw timings go to OUT.timings.json, rewritten
after every shape, so a run cut short keeps what it measured. To adopt the result: copy OUT.json
over ``qvggt_deploy/ops/w4a16_dispatch.json`` and regenerate the header
(``python -m qvggt_deploy.ops.dispatch --header kernels/w4a16_dispatch_table.h``, or pass
``--header`` here), then rebuild the library / plugin.

Without a CUDA GPU it refuses (exit 2) and writes nothing.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_SHAPES = ["1024x3072", "1024x1024", "1024x4096", "4096x1024", "2048x6144", "2048x2048", "2048x8192",
                  "8192x2048", "2048x1024"]
DEFAULT_M = [128, 256, 512, 768, 1024, 1536, 2048, 2748, 4096, 6144, 8192, 13740]


def parse_shape(text: str):
    from qvggt_deploy.errors import QvggtError

    try:
        k, n = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise QvggtError(f"--shapes takes KxN (in_features x out_features), e.g. 1024x3072; got {text!r}") from None
    return k, n


def gpu_seconds(fn, reps: int, batches: int = 5) -> float:
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / reps)
    return statistics.median(times)


def measure(k: int, n: int, ms, group: int) -> list:
    import torch

    from qvggt_deploy.ops import w4a16
    from qvggt_deploy.ops.layout import repack_for_kernel
    from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize

    gen = torch.Generator().manual_seed(k * 7 + n)
    w = torch.randn(n, k, generator=gen) * 0.02
    scales = compute_scales(w, 4, group)
    qweight, scales_dev = repack_for_kernel(pack_int4(quantize(w, scales, 4, group)), scales.half(), group)
    qweight, scales_dev = qweight.cuda(), scales_dev.cuda()
    rows = []
    for m in ms:
        a = torch.randn(m, k, device="cuda").half()
        out = torch.empty(m, n, device="cuda", dtype=torch.float16)
        reps = max(3, min(50, int(2e10 / (2 * m * n * k) + 1)))
        row = {"k": k, "n": n, "m": m, "group": group, "reps": reps}
        for key, algo in (("fused_s", "fused"), ("cublas_s", "dequant_cublas")):
            row[key] = gpu_seconds(lambda algo=algo, a=a, out=out: w4a16.gemm(a, qweight, scales_dev, None, group,
                                                                               algo=algo, out=out), reps)
        rows.append(row)
    torch.cuda.empty_cache()
    return rows


def ensure_library() -> None:
    from qvggt_deploy.ops import w4a16
    from qvggt_deploy.ops.build import build_library, cuda_arch_of_current_gpu

    if os.environ.get(w4a16.ENV_LIB):
        return
    arch = cuda_arch_of_current_gpu()
    os.environ[w4a16.ENV_LIB] = str(build_library(arch, REPO / "kernels" / "build" / f"tune-sm{arch}", jobs=8))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="dispatch table to write (JSON)")
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="weight shapes KxN (default: VGGT-1B's "
                        "aggregator and camera-head Linear layers)")
    parser.add_argument("--m", nargs="+", type=int, default=DEFAULT_M, help="row counts to time")
    parser.add_argument("--group", type=int, default=128, help="input channels per scale (default 128)")
    parser.add_argument("--base", type=Path, default=None, help="table whose other architectures are kept "
                        "(default: the committed one)")
    parser.add_argument("--header", type=Path, default=None, help="also render the C++ header here "
                        "(kernels/w4a16_dispatch_table.h to adopt the result)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("error: tune_dispatch.py needs a CUDA GPU (torch.cuda.is_available() is False); nothing was written.",
              file=sys.stderr)
        return 2

    from qvggt_deploy.errors import QvggtError
    from qvggt_deploy.fileio import check_output_file, read_json_or_none, write_json, write_text
    from qvggt_deploy.log import progress
    from qvggt_deploy.ops import dispatch

    try:
        shapes = [parse_shape(s) for s in args.shapes]
        if any(m <= 0 for m in args.m):
            raise QvggtError("--m takes positive row counts")
        def is_table(path):  # an existing OUT is replaced only if it is a dispatch table
            return (read_json_or_none(path) or {}).get("format") == dispatch.FORMAT

        check_output_file(args.out, ours=is_table, what="dispatch table", option="OUT")
        base = dispatch.load_table(args.base) if args.base is not None else dispatch.default_table()
        ensure_library()
        major, minor = torch.cuda.get_device_capability()
        sm, device = 10 * major + minor, torch.cuda.get_device_name()
        timings_path = args.out.with_suffix(".timings.json")
        timings = []
        for k, n in progress(shapes, desc="tune_dispatch"):
            timings += measure(k, n, sorted(set(args.m)), args.group)
            write_json(timings_path, {"device": device, "sm": sm, "torch": torch.__version__,
                                      "cuda": torch.version.cuda, "rows": timings})
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        source = (f"measured by benchmarks/tune_dispatch.py on {date}, group {args.group}, "
                  f"M in {sorted(set(args.m))} (timings: {timings_path.name})")
        table = dispatch.table_from_timings(timings, sm, device, source, base=base)
        dispatch.write_table(args.out, table)
        if args.header is not None:
            write_text(args.header, dispatch.render_header(table))
    except QvggtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({dispatch.arch_key(sm)}: "
          + ", ".join(f"{r['k']}x{r['n']}: {r['cublas_min_m']}" for r in table["archs"][dispatch.arch_key(sm)]["shapes"])
          + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
