"""One-command GPU check of the W4A16 kernel: correctness, throughput, end-to-end VGGT-1B.

    python3 benchmarks/gpu_check.py OUT.json [--quick] [--skip-e2e]

Run from the repository root on a CUDA machine (python3 with a CUDA torch, nvcc). Self-contained:
unless ``QVGGT_W4A16_LIB`` names a library, it
builds ``libqvggt_w4a16.so`` with nvcc for this GPU's architecture into
``kernels/build/gpu-check/``. It refuses to run without CUDA (exit 2, no JSON) and never
reports a number it did not measure; a failed correctness case or a crashed section ends with
exit code 1, the JSON still holding what was measured and the errors.

Sections of the JSON:
- ``env``: GPU, SM count, L2, CUDA (torch's and nvcc's), driver, torch, date, git commit, hash
  of the kernel sources.
- ``correctness``: every algo against an FP32-accumulated reference of the same INT4 weights
  (relative mean-abs error < 1e-3, Marlin's criterion), the dequantiser bit for bit, VGGT's
  (K, N) pairs x M, odd sizes, and rejected bad shapes.
- ``throughput``: GPU time per call from CUDA-graph replays, side by side on the same GPU:
  ours (AUTO and each algo), our dequantiser + cuBLAS, cuBLAS FP16 (``torch.matmul`` in half)
  and FP32 with TF32 off; ratios > 1 mean ours is faster. For M <= 256 each call reads a
  different copy of the weights (more copies than fit in L2), as layer after layer would.
- ``e2e``: vggt-1b (random weights, track head disabled: without query points it never runs)
  at 518x518, 2 and 8 frames: latency and peak GPU memory for FP32, FP16 (aggregator in fp16,
  heads fp32 as in the official model), W4A16 (every aggregator and camera-head Linear the
  kernel can run converted) and W4A16 with the dequantise+cuBLAS route from 1024 rows on.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from qvggt_deploy.errors import QvggtError  # noqa: E402

VGGT_KN = [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024), (2048, 6144), (2048, 8192), (8192, 2048)]
VGGT_M = [1, 8, 16, 256, 1374, 2748, 13740]  # 8: the camera head at 8 frames; 1374 tokens per 518x518 frame
ODD = [(1, 192, 48, 64), (3, 320, 80, 320), (17, 640, 144, 32), (129, 1088, 272, 64), (1000, 192, 48, 64)]
ALGOS = ["gemv", "mma16", "mma64", "mma128"]
E2E_MODES = {
    "fp32": "all weights and activations fp32, TF32 off",
    "fp16": "aggregator fp16 (weights and activations); heads fp32, as the official model runs them",
    "w4a16": "as fp16, every aggregator and camera-head Linear the kernel can run -> W4A16Linear (fused kernel)",
    "w4a16_hybrid": "as w4a16, but from 1024 rows on: our dequantiser + cuBLAS FP16 instead of the fused kernel",
}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("QVGGT_GIT_COMMIT")


def kernel_source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((REPO / "kernels").glob("*.[ch]*")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import ctypes

        version = ctypes.c_int(0)
        ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version))
        return f"CUDA driver API {version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        return None


def environment(nvcc: str | None) -> dict:
    props = torch.cuda.get_device_properties(0)
    nvcc_version = None
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True)
        nvcc_version = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else None
    return {
        "device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
        "sm_count": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None),
        "memory_bytes": props.total_memory, "cuda_torch": torch.version.cuda, "nvcc": nvcc_version,
        "driver": driver_version(), "torch": torch.__version__,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(), "kernel_source_sha256_16": kernel_source_hash(),
    }


def make_weights(n: int, k: int, group: int, device="cuda", seed: int = 0):
    """Random fp32 W -> canonical INT4 -> device layout; also the fp16 weights the kernel multiplies."""
    from qvggt_deploy.ops.layout import repack_for_kernel
    from qvggt_deploy.quant.quantizer import compute_scales, pack_int4, quantize

    gen = torch.Generator(device=device).manual_seed(seed)
    w = torch.randn(n, k, device=device, generator=gen) * 0.02
    scales = compute_scales(w, 4, group)
    q = quantize(w, scales, 4, group)
    qweight, scales_dev = repack_for_kernel(pack_int4(q), scales.half(), group)
    w16 = (q.float() * scales.repeat_interleave(group, dim=1)).half()
    return qweight, scales_dev, w16


# ---------------------------------------------------------------------------------- correctness


def compare(got: torch.Tensor, expected: torch.Tensor) -> dict:
    diff = (got.float() - expected.float()).abs()
    scale = expected.float().abs()
    return {"rel_mean_abs_err": (diff.mean() / scale.mean().clamp_min(1e-12)).item(),
            "max_abs_err": diff.max().item(), "max_abs_expected": scale.max().item(),
            "finite": bool(torch.isfinite(got).all())}


def check_case(m, k, n, group, algo="auto", split_k=0, bias=True, seed=0) -> dict:
    from qvggt_deploy.ops import w4a16

    qweight, scales, w16 = make_weights(n, k, group, seed=seed)
    gen = torch.Generator(device="cuda").manual_seed(seed + 1)
    a = torch.randn(m, k, device="cuda", generator=gen).half()
    b = (torch.randn(n, device="cuda", generator=gen) * 0.1).half() if bias else None
    expected = (a.float() @ w16.float().t() + (b.float() if bias else 0.0)).half()  # TF32 is off
    got = w4a16.gemm(a, qweight, scales, b, group, algo=algo, split_k=split_k)
    case = {"m": m, "k": k, "n": n, "group": group, "algo": algo, "split_k": split_k, "bias": bias,
            **compare(got, expected)}
    case["vs_fp16_cublas"] = compare(F.linear(a, w16, b), expected)["rel_mean_abs_err"]
    case["passed"] = case["finite"] and case["rel_mean_abs_err"] < 1e-3 and \
        case["max_abs_err"] <= 1e-2 * max(case["max_abs_expected"], 1e-3)
    return case


def run_correctness(quick: bool) -> dict:
    from qvggt_deploy.ops import w4a16
    from qvggt_deploy.ops.reference import dequantize_reference

    cases = []
    for k, n in VGGT_KN:
        for group in (32, 64, 128):  # the dequantiser, bit for bit against the CPU reference
            qweight, scales, w16 = make_weights(n, k, group, seed=group)
            exact = torch.equal(w4a16.dequantize(qweight, scales, group), w16) and torch.equal(
                w16.cpu(), dequantize_reference(qweight.cpu(), scales.cpu(), group))
            cases.append({"kind": "dequantize", "k": k, "n": n, "group": group, "passed": exact})
        for m in (VGGT_M[:4] + [1374] if quick else VGGT_M):
            cases.append({"kind": "gemm", **check_case(m, k, n, 128, seed=m)})
    for m in (1, 5, 8, 16, 100, 256):  # each algo, with and without forced K splits
        for algo in ALGOS:
            if algo == "gemv" and m > 8:
                continue
            for split_k in ((0,) if algo == "gemv" else (0, 3)):
                cases.append({"kind": "algo", **check_case(m, 1024, 3072, 64, algo, split_k, bias=m % 2 == 0)})
    for m, k, n, group in ODD:
        cases.append({"kind": "odd", **check_case(m, k, n, group, bias=False)})
    # The library's own shape checks, with real device pointers (the binding would catch these first).
    lib = w4a16.load_library()
    buf = torch.zeros(1 << 20, dtype=torch.uint8, device="cuda")
    rejected = []
    for m, k, n, group, status in ((4, 96, 32, 32, 1), (4, 128, 24, 32, 1), (4, 128, 32, 48, 2), (-1, 128, 32, 32, 1)):
        p = buf.data_ptr()
        got = lib.qvggt_w4a16_gemm_ex(p, p, p, None, p, m, n, k, group, None, 0, None, 0, 0)
        rejected.append({"m": m, "k": k, "n": n, "group": group, "status": got, "passed": got == status})
    cases += [{"kind": "rejected", **r} for r in rejected]
    return {"passed": all(c["passed"] for c in cases), "n_cases": len(cases),
            "n_failed": sum(not c["passed"] for c in cases), "cases": cases}


# ----------------------------------------------------------------------------------- throughput


def gpu_time_per_call(calls, target_s: float = 0.15) -> float:
    """Median GPU seconds per call: the calls captured once into a CUDA graph, replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture (kernel attributes, cuBLAS handles)
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    graph.replay()
    end.record()
    end.synchronize()
    first = start.elapsed_time(end) / 1e3
    times = []
    for _ in range(max(3, min(50, math.ceil(target_s / max(first, 1e-6))))):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del graph
    return statistics.median(times) / len(calls)


def bench_shape(m: int, k: int, n: int, group: int, l2_bytes: int) -> dict:
    from qvggt_deploy.ops import w4a16

    def copies_for(nbytes):  # past L2 twice over, so weights come from DRAM as in a real model
        return 1 if m > 256 else max(1, min(256, math.ceil(2 * l2_bytes / nbytes)))

    a16 = torch.randn(m, k, device="cuda").half()
    a32 = a16.float()
    out16 = torch.empty(m, n, dtype=torch.float16, device="cuda")
    out32 = torch.empty(m, n, dtype=torch.float32, device="cuda")
    qweight, scales, w16 = make_weights(n, k, group)
    row = {"m": m, "k": k, "n": n, "group": group}

    packs = [(qweight, scales)] + [(qweight.clone(), scales.clone()) for _ in range(copies_for(n * k // 2) - 1)]
    row["weight_copies_w4a16"] = len(packs)

    def ours(algo, split_k=0):
        return [lambda q=q, s=s: w4a16.gemm(a16, q, s, None, group, algo=algo, split_k=split_k, out=out16)
                for q, s in packs]

    row["w4a16_auto_s"] = gpu_time_per_call(ours("auto"))
    for algo in ALGOS:
        if (algo == "gemv" and m > 8) or (algo == "mma16" and m > 256) or (algo == "mma128" and m < 256):
            continue
        row[f"w4a16_{algo}_s"] = gpu_time_per_call(ours(algo))
    scratch = torch.empty(n, k, dtype=torch.float16, device="cuda")
    row["dequant_cublas_s"] = gpu_time_per_call(
        [lambda q=q, s=s: torch.matmul(a16, w4a16.dequantize(q, s, group, out=scratch).t(), out=out16)
         for q, s in packs])
    packs.clear()  # frees the weight copies (ours() closes over the name)

    w16s = [w16] + [w16.clone() for _ in range(copies_for(n * k * 2) - 1)]
    row["weight_copies_fp16"] = len(w16s)
    row["fp16_cublas_s"] = gpu_time_per_call([lambda w=w: torch.matmul(a16, w.t(), out=out16) for w in w16s])
    del w16s
    w32s = [w16.float() for _ in range(copies_for(n * k * 4))]
    row["weight_copies_fp32"] = len(w32s)
    row["fp32_s"] = gpu_time_per_call([lambda w=w: torch.matmul(a32, w.t(), out=out32) for w in w32s])
    del w32s

    flops = 2.0 * m * n * k
    row["w4a16_auto_tflops"] = flops / row["w4a16_auto_s"] / 1e12
    row["fp16_cublas_tflops"] = flops / row["fp16_cublas_s"] / 1e12
    row["speedup_vs_fp16"] = row["fp16_cublas_s"] / row["w4a16_auto_s"]
    row["speedup_vs_fp32"] = row["fp32_s"] / row["w4a16_auto_s"]
    row["dequant_cublas_speedup_vs_fp16"] = row["fp16_cublas_s"] / row["dequant_cublas_s"]
    best = min((v, key) for key, v in row.items() if key.startswith("w4a16_") and key.endswith("_s"))
    row["best_w4a16"] = best[1][len("w4a16_"):-2]
    return row


def run_throughput(quick: bool) -> list:
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2 ** 20)
    rows = []
    for k, n in VGGT_KN:
        for m in (VGGT_M[:3] + [1374] if quick else VGGT_M):
            rows.append(bench_shape(m, k, n, 128, l2))
            torch.cuda.empty_cache()
    return rows


# ------------------------------------------------------------------------------------------ e2e


def prepare_model(mode: str, device, preset: str, group: int):
    from qvggt_deploy.model import build_model, get_preset
    from qvggt_deploy.ops.linear import convert_model_to_w4a16, rtn_w4a16_layers

    cfg = get_preset(preset).replace(enable_track=False)
    model = build_model(cfg, seed=0, device=device)
    info = {"mode": mode}
    if mode != "fp32":
        model.aggregator.half()  # heads stay fp32: VGGT.forward feeds them fp32 tokens
    if mode.startswith("w4a16"):
        def wanted(name, _module):
            return name.startswith(("aggregator.", "camera_head."))

        layers = rtn_w4a16_layers(model, group, filter_fn=wanted)
        convert_model_to_w4a16(model, layers, cublas_min_m=1024 if mode == "w4a16_hybrid" else None)
        info["converted_linears"] = len(layers)
        info["unconverted_linears"] = sorted(name for name, mod in model.named_modules()
                                             if isinstance(mod, torch.nn.Linear) and wanted(name, mod))
    tensors = list(model.parameters()) + list(model.buffers())
    info["weight_bytes"] = sum(t.numel() * t.element_size() for t in tensors)
    return model.eval(), info


def run_e2e(device="cuda", preset: str = "vggt-1b", frames=(2, 8), group: int = 128,
            modes=("fp32", "fp16", "w4a16", "w4a16_hybrid"), reps: int = 3, size: int | None = None) -> list:
    """Latency and peak memory per mode and frame count; outputs compared with FP32's."""
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    rows, reference = [], {}
    for mode in modes:
        model, info = prepare_model(mode, device, preset, group)
        side = size or model.cfg.img_size
        for s in frames:
            gen = torch.Generator().manual_seed(s)
            images = torch.rand(s, 3, side, side, generator=gen).to(device)
            if mode != "fp32":
                images = images.half()
            with torch.no_grad():
                model(images)  # warm-up
                if on_gpu:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    out = model(images)
                    if on_gpu:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            row = {**info, "frames": s, "image_size": side, "latency_s": statistics.median(times),
                   "latency_all_s": times,
                   "peak_memory_bytes": torch.cuda.max_memory_allocated() if on_gpu else None}
            outputs = {key: out[key].float().cpu() for key in ("pose_enc", "depth", "world_points")}
            if mode == "fp32":
                reference[s] = outputs
            elif s in reference:
                row["rel_l2_vs_fp32"] = {key: ((v - reference[s][key]).norm() / reference[s][key].norm()).item()
                                         for key, v in outputs.items()}
            rows.append(row)
        del model
        if on_gpu:
            torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------------- main


def prepare_library() -> dict:
    from qvggt_deploy.ops import w4a16
    from qvggt_deploy.ops.build import build_library, cuda_arch_of_current_gpu

    if not os.environ.get(w4a16.ENV_LIB):
        arch = cuda_arch_of_current_gpu()
        t0 = time.perf_counter()
        path = build_library(arch, REPO / "kernels" / "build" / "gpu-check", jobs=min(16, os.cpu_count() or 2))
        os.environ[w4a16.ENV_LIB] = str(path)
        built = {"built_for": f"sm_{arch}", "build_s": time.perf_counter() - t0}
    else:
        built = {"built_for": None}
    w4a16._lib = None
    w4a16.load_library()
    return {"path": os.environ[w4a16.ENV_LIB], **built}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON report to write")
    parser.add_argument("--quick", action="store_true", help="fewer M values and no 8-frame run (~1 minute)")
    parser.add_argument("--skip-e2e", action="store_true", help="no end-to-end VGGT-1B section")
    parser.add_argument("--group", type=int, default=128, help="group size of the end-to-end model (default 128)")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing measured", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 means FP32, for the baseline and the references
    torch.backends.cudnn.allow_tf32 = False
    from qvggt_deploy.ops.build import find_nvcc

    t_start = time.perf_counter()
    report = {"schema": 1, "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
              "env": environment(find_nvcc()), "errors": []}
    try:
        report["library"] = prepare_library()
    except QvggtError as exc:
        print(f"gpu_check: cannot build or load the kernel library: {exc}", file=sys.stderr)
        return 2

    sections = [("correctness", lambda: run_correctness(args.quick)),
                ("throughput", lambda: run_throughput(args.quick))]
    if not args.skip_e2e:
        sections.append(("e2e", lambda: run_e2e(frames=(2,) if args.quick else (2, 8), group=args.group)))
        report["e2e_modes"] = {**E2E_MODES, "group": args.group, "preset": "vggt-1b (track head disabled)"}
    for name, run in sections:
        t0 = time.perf_counter()
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        try:
            report[name] = run()
        except Exception as exc:  # recorded, reported, and the exit code says so
            report["errors"].append({"section": name, "error": repr(exc), "traceback": traceback.format_exc()})
            print(f"gpu_check: {name} FAILED: {exc!r}", file=sys.stderr)
        report.setdefault("section_wall_s", {})[name] = time.perf_counter() - t0
    report["wall_s"] = time.perf_counter() - t_start
    ok = not report["errors"] and report.get("correctness", {}).get("passed", False)
    report["passed"] = ok
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    summary(report)
    print(f"gpu_check: {'PASSED' if ok else 'FAILED'}; report in {args.out}", file=sys.stderr)
    return 0 if ok else 1


def summary(report: dict) -> None:
    """A few lines on stderr; the JSON holds everything."""
    corr = report.get("correctness")
    if corr:
        print(f"correctness: {corr['n_cases'] - corr['n_failed']}/{corr['n_cases']} passed", file=sys.stderr)
        for case in corr["cases"]:
            if not case["passed"]:
                print(f"  FAILED {case}", file=sys.stderr)
    for row in report.get("throughput", []):
        print(f"M={row['m']:>5} K={row['k']:>4} N={row['n']:>4}: w4a16 {row['w4a16_auto_s'] * 1e6:9.1f} us "
              f"({row['best_w4a16']} best), x{row['speedup_vs_fp16']:.2f} vs fp16, x{row['speedup_vs_fp32']:.2f} "
              f"vs fp32, dequant+cuBLAS x{row['dequant_cublas_speedup_vs_fp16']:.2f}", file=sys.stderr)
    for row in report.get("e2e", []):
        print(f"e2e {row['mode']:>12} S={row['frames']}: {row['latency_s'] * 1e3:8.1f} ms, peak "
              f"{(row['peak_memory_bytes'] or 0) / 2 ** 30:6.2f} GiB, weights {row['weight_bytes'] / 2 ** 30:.2f} GiB",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
