"""One-command GPU check of the W4A16 kernel: correctness, GEMM ratios, end-to-end VGGT-1B, targets.

    timeout 540 python3 benchmarks/gpu_check.py OUT.json [--quick] [--skip-e2e] [--budget-total S]
                                                         [--budget SECTION=S ...]

Run from the repository root on a CUDA machine (python3 with a CUDA torch, nvcc). Self-contained:
it imports ``qvggt_deploy`` from the checkout (only torch and the standard library are needed;
no onnx, onnxruntime or polygraphy) and, unless ``QVGGT_W4A16_LIB`` names a library, builds
``libqvggt_w4a16.so`` with nvcc for this GPU's architecture into ``kernels/build/gpu-check/``.
It refuses to run without CUDA (exit 2, no JSON) and never reports a number it did not measure.

The JSON is replaced whole (atomically) when each section starts and ends and after every
measured row, so a ``timeout`` kill loses at most the row in flight. ``sections`` gives each
section's status (ok, failed, over-budget, skipped-over-budget, not-run; killed when SIGTERM came
during it, running when the process died in it),
wall time, budget and progress. Each section has a wall-clock budget (``--budget NAME=S``), capped
by what is left of ``--budget-total`` (default 480 s: ``timeout 540`` leaves a minute); a section
stops before a row that would not fit and says how far it got. Rows are measured in priority order
(the M values of the targets first).

Sections, in order: ``env`` (GPU, driver, CUDA runtime, torch, nvcc, git commit, kernel source
hash), ``library`` (build/load), ``correctness`` (every algo and VGGT-1B shape against an
FP32-accumulated reference of the same INT4 weights: relative mean-abs error < 1e-3, Marlin's
criterion; the dequantiser bit for bit; odd sizes; rejected bad shapes), ``weights`` (bytes of
int4 + scales vs fp16 vs fp32, from the model's shapes), ``gemm`` (GPU time per call from
CUDA-graph replays, every VGGT-1B Linear (K, N) x M in 1, 2, 4, ..., 4096 and VGGT's own 1374,
2748, 10992 rows: ours as the library dispatches it, our dequantiser + cuBLAS, cuBLAS FP16; for
M <= 256 each call reads another copy of the weights, more copies than fit in L2, as layer after
layer would), ``e2e`` (vggt-1b with RANDOM weights, track head disabled, 518x518, 2 and 8 frames:
FP32 with TF32 off and on, FP16 aggregator, W4A16, W4A16 with dequantise+cuBLAS from 1024 rows),
``algos`` (each forced kernel algo, for tuning). After every write ``ratios`` and ``targets``
(the issue's done-means as true / false / null = not measured, with the numbers) are recomputed
from what is there.

Exit status: 0 when every section ran to the end and every correctness case passed, 1 when a
section failed or a case did not pass, 3 when nothing failed but a section stopped at its budget
or was skipped, 2 without CUDA, 143 on SIGTERM.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from qvggt_deploy.bench.sections import Section, SectionRunner  # noqa: E402

PRESET = "vggt-1b"
POW2_M = [1 << i for i in range(13)]  # 1 .. 4096
VGGT_ROWS_M = [1374, 2748, 10992]  # tokens of 1, 2 and 8 frames at 518x518 (1369 patches + 5 special)
SMALL_M, LARGE_M = 16, 2048  # the targets' M bounds
ODD = [(1, 192, 48, 64), (3, 320, 80, 320), (17, 640, 144, 32), (129, 1088, 272, 64), (1000, 192, 48, 64)]
E2E_MODES = {
    "fp32": "all weights and activations fp32, TF32 off (torch.backends.cuda.matmul and cudnn)",
    "fp32_tf32": "as fp32 with TF32 on for matmuls and convolutions",
    "fp16": "aggregator fp16 (weights and activations); heads fp32 (TF32 off), as the official model runs them",
    "w4a16": "as fp16, every aggregator and camera-head Linear the kernel can run -> W4A16Linear (library dispatch)",
    "w4a16_hybrid": "as w4a16, but from 1024 rows on our dequantiser + cuBLAS FP16 instead of the kernel",
}
DEFAULT_BUDGETS = {"env": 30, "library": 150, "correctness": 60, "weights": 20, "gemm": 150, "e2e": 200, "algos": 60}
TARGETS = {
    "gemm_large_m_vs_cublas_fp16": f">= 0.9x cuBLAS FP16 at M >= {LARGE_M} on every VGGT-1B (K, N)",
    "gemm_small_m_vs_fp16": f">= 2x cuBLAS FP16 at M <= {SMALL_M} on every VGGT-1B (K, N)",
    "e2e_vs_fp32_tf32_off": "VGGT-1B W4A16 >= 2.8x faster than FP32 (TF32 off) at 2 and 8 frames",
    "e2e_vs_fp32_tf32_on": "VGGT-1B W4A16 >= 2.8x faster than FP32 (TF32 on) at 2 and 8 frames",
    "e2e_vs_fp16": "VGGT-1B W4A16 latency within 10% of FP16 (<= 1.1x) at 2 and 8 frames",
    "weights_linears_vs_fp16": "quantized Linear weights >= 3.5x smaller than FP16",
    "weights_model_vs_fp16": "all weights >= 3.5x smaller than an all-FP16 model (the rest kept fp16)",
}


# ------------------------------------------------------------------------------------------- env


def _run(cmd, timeout=20):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> dict:
    """The checkout's commit, or ``QVGGT_GIT_COMMIT`` where the copy has no .git (device machines)."""
    commit = _run(["git", "-C", str(REPO), "rev-parse", "HEAD"], 10)
    if commit:
        dirty = _run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], 10)
        return {"commit": commit, "source": "git", "modified_files": bool(dirty)}
    env = os.environ.get("QVGGT_GIT_COMMIT")
    return {"commit": env, "source": "QVGGT_GIT_COMMIT" if env else "unknown"}


def kernel_source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((REPO / "kernels").glob("*.[ch]*")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def driver_versions() -> dict:
    out = {"driver": None, "cuda_driver_api": None}
    smi = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if smi:
        out["driver"] = smi.splitlines()[0]
    try:
        import ctypes

        version = ctypes.c_int(0)
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) == 0:
            out["cuda_driver_api"] = f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        pass
    return out


def cuda_runtime_version() -> str | None:
    """The CUDA runtime this process loaded (cudaRuntimeGetVersion of the libcudart in
    /proc/self/maps), not only the one torch was built with."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps if "/libcudart.so" in line.split()[-1]})
    for path in paths:
        try:
            version = ctypes.c_int(0)
            if ctypes.CDLL(path).cudaRuntimeGetVersion(ctypes.byref(version)) == 0:
                return f"{version.value // 1000}.{version.value % 1000 // 10}"
        except (OSError, AttributeError):
            continue
    return None


def run_env(_ctx=None) -> dict:
    from qvggt_deploy.ops.build import find_nvcc

    props = torch.cuda.get_device_properties(0)
    nvcc = find_nvcc()
    nvcc_version = _run([nvcc, "--version"]) if nvcc else None
    return {
        "device": torch.cuda.get_device_name(0), "capability": list(torch.cuda.get_device_capability(0)),
        "sm_count": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None),
        "memory_bytes": props.total_memory, **driver_versions(),
        "cuda_runtime": cuda_runtime_version(), "cuda_torch_built_with": torch.version.cuda,
        "nvcc": nvcc, "nvcc_version": nvcc_version.splitlines()[-1] if nvcc_version else None,
        "torch": torch.__version__, "python": sys.version.split()[0],
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_commit(), "kernel_source_sha256_16": kernel_source_hash(),
    }


def run_library(ctx) -> dict:
    from qvggt_deploy.ops import w4a16
    from qvggt_deploy.ops.build import build_library, cuda_arch_of_current_gpu

    built = {"built_for": None}
    if not os.environ.get(w4a16.ENV_LIB):
        arch = cuda_arch_of_current_gpu()
        t0 = time.perf_counter()
        path = build_library(arch, REPO / "kernels" / "build" / "gpu-check", jobs=min(16, os.cpu_count() or 2),
                             timeout=max(30.0, ctx.left()))
        os.environ[w4a16.ENV_LIB] = str(path)
        built = {"built_for": f"sm_{arch}", "build_s": time.perf_counter() - t0}
    w4a16._lib = None
    w4a16.load_library()
    return {"path": os.environ[w4a16.ENV_LIB], **built}


# ------------------------------------------------------------------------------- model shapes


@functools.lru_cache(maxsize=4)
def vggt_linears(preset: str = PRESET, group: int = 128):
    """(name, K, N, has_bias, converted) of every Linear of the deployed model (track head off);
    ``converted``: aggregator or camera head, and a shape the kernel takes."""
    from qvggt_deploy.model import build_model, get_preset
    from qvggt_deploy.ops.layout import kernel_shape_error

    model = build_model(get_preset(preset).replace(enable_track=False), device="meta")
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            converted = (name.startswith(("aggregator.", "camera_head."))
                         and kernel_shape_error(mod.out_features, mod.in_features, group) is None)
            out.append((name, mod.in_features, mod.out_features, mod.bias is not None, converted))
    return model, out


def vggt_shapes(preset: str = PRESET, group: int = 128) -> list:
    """Distinct (K, N) of the Linears W4A16 converts, with how many layers have each."""
    counts: dict = {}
    for name, k, n, _bias, converted in vggt_linears(preset, group)[1]:
        if converted:
            key = (k, n)
            counts.setdefault(key, {"k": k, "n": n, "layers": 0, "where": set()})
            counts[key]["layers"] += 1
            counts[key]["where"].add(name.split(".")[0])
    return [{**v, "where": sorted(v["where"])} for _, v in sorted(counts.items())]


def run_weights(_ctx=None, preset: str = PRESET, group: int = 128) -> dict:
    """Weight bytes from the model's shapes (meta tensors, nothing allocated)."""
    model, linears = vggt_linears(preset, group)
    lin = {"layers": 0, "fp32_bytes": 0, "fp16_bytes": 0, "w4a16_bytes": 0}
    converted_params = set()
    for name, k, n, bias, converted in linears:
        if not converted:
            continue
        lin["layers"] += 1
        lin["fp32_bytes"] += 4 * (k * n + (n if bias else 0))
        lin["fp16_bytes"] += 2 * (k * n + (n if bias else 0))
        lin["w4a16_bytes"] += k * n // 2 + 2 * (k // group) * n + (2 * n if bias else 0)  # int4, fp16 scales, fp16 bias
        converted_params.update({f"{name}.weight", f"{name}.bias"})
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    elements = sum(t.numel() for t in tensors.values())
    rest = sum(t.numel() for n, t in tensors.items() if n not in converted_params)
    whole = {"fp32_bytes": 4 * elements, "fp16_bytes": 2 * elements, "w4a16_bytes": lin["w4a16_bytes"] + 2 * rest}
    return {"preset": preset, "group": group, "track_head": False, "linears": lin, "model": whole,
            "note": "w4a16: int4 weights (K*N/2 bytes) + fp16 group scales + fp16 bias for the converted Linears; "
                    "model.w4a16_bytes keeps every other tensor fp16, as an engine stores it (PyTorch's W4A16 mode "
                    "keeps the heads fp32: e2e weight_bytes)"}


# --------------------------------------------------------------------------------- correctness


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


def correctness_cases(shapes, quick: bool) -> list:
    """What to check, as (kind, arguments) in order."""
    from qvggt_deploy.ops import w4a16

    cases = []
    ms = [1, 8, 16, 256, 1374] + ([] if quick else [2748, 10992])
    for s in shapes:
        for group in (32, 64, 128):
            cases.append(("dequantize", (s["k"], s["n"], group)))
        cases += [("gemm", (m, s["k"], s["n"], 128)) for m in ms]
    forced = [a for a in w4a16.ALGOS if a != "auto"]
    for m in (1, 5, 8, 16, 100, 256):  # each algo, with and without forced K splits
        for algo in forced:
            if algo == "gemv" and m > 8:
                continue
            for split_k in ((0,) if algo == "gemv" else (0, 3)):
                cases.append(("algo", (m, 1024, 3072, 64, algo, split_k, m % 2 == 0)))
    cases += [("odd", args) for args in ODD]
    cases.append(("rejected", None))
    return cases


def run_case(kind: str, args) -> list:
    from qvggt_deploy.ops import w4a16
    from qvggt_deploy.ops.reference import dequantize_reference

    if kind == "dequantize":  # the dequantiser, bit for bit against the CPU reference
        k, n, group = args
        qweight, scales, w16 = make_weights(n, k, group, seed=group)
        exact = torch.equal(w4a16.dequantize(qweight, scales, group), w16) and torch.equal(
            w16.cpu(), dequantize_reference(qweight.cpu(), scales.cpu(), group))
        return [{"kind": kind, "k": k, "n": n, "group": group, "passed": exact}]
    if kind == "gemm":
        m, k, n, group = args
        return [{"kind": kind, **check_case(m, k, n, group, seed=m)}]
    if kind == "algo":
        m, k, n, group, algo, split_k, bias = args
        return [{"kind": kind, **check_case(m, k, n, group, algo, split_k, bias=bias)}]
    if kind == "odd":
        m, k, n, group = args
        return [{"kind": kind, **check_case(m, k, n, group, bias=False)}]
    # The library's own shape checks, with real device pointers (the binding would catch these first).
    lib = w4a16.load_library()
    buf = torch.zeros(1 << 20, dtype=torch.uint8, device="cuda")
    rows = []
    for m, k, n, group, status in ((4, 96, 32, 32, 1), (4, 128, 24, 32, 1), (4, 128, 32, 48, 2), (-1, 128, 32, 32, 1)):
        p = buf.data_ptr()
        got = lib.qvggt_w4a16_gemm_ex(p, p, p, None, p, m, n, k, group, None, 0, None, 0, 0)
        rows.append({"kind": "rejected", "m": m, "k": k, "n": n, "group": group, "status": got, "passed": got == status})
    return rows


def run_correctness(ctx, shapes, quick: bool) -> dict:
    doc = {"passed": None, "n_cases": 0, "n_failed": 0, "cases": []}
    for kind, args in ctx.iterate(correctness_cases(shapes, quick), "cases"):
        doc["cases"] += run_case(kind, args)
        doc["n_cases"] = len(doc["cases"])
        doc["n_failed"] = sum(not c["passed"] for c in doc["cases"])
        ctx.data = doc
    doc["passed"] = doc["n_failed"] == 0 and not ctx.stopped_early
    return doc


# ------------------------------------------------------------------------------------ timing


def gpu_time_per_call(calls, target_s: float = 0.03) -> float:
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


def weight_copies(m: int, nbytes: int, l2_bytes: int) -> int:
    """Past L2 twice over for small M, so weights come from DRAM as in a real model."""
    return 1 if m > 256 else max(1, min(256, math.ceil(2 * l2_bytes / nbytes)))


def bench_shape(m: int, k: int, n: int, group: int, l2_bytes: int, algos=("auto",)) -> dict:
    """GPU seconds per call of ours (each of ``algos``), and unless only forced algos are asked,
    our dequantiser + cuBLAS and cuBLAS FP16 on the same GPU."""
    from qvggt_deploy.ops import w4a16

    a16 = torch.randn(m, k, device="cuda").half()
    out16 = torch.empty(m, n, dtype=torch.float16, device="cuda")
    qweight, scales, w16 = make_weights(n, k, group)
    row = {"m": m, "k": k, "n": n, "group": group}
    packs = [(qweight, scales)] + [(qweight.clone(), scales.clone())
                                   for _ in range(weight_copies(m, n * k // 2, l2_bytes) - 1)]
    row["weight_copies_w4a16"] = len(packs)
    for algo in algos:
        try:
            row[f"w4a16_{algo}_s"] = gpu_time_per_call(
                [lambda q=q, s=s: w4a16.gemm(a16, q, s, None, group, algo=algo, out=out16) for q, s in packs])
        except Exception as exc:  # a forced algo the library refuses for this shape
            row[f"w4a16_{algo}_error"] = repr(exc)
    if algos == ("auto",):
        scratch = torch.empty(n, k, dtype=torch.float16, device="cuda")
        row["dequant_cublas_s"] = gpu_time_per_call(
            [lambda q=q, s=s: torch.matmul(a16, w4a16.dequantize(q, s, group, out=scratch).t(), out=out16)
             for q, s in packs])
        del scratch
        packs.clear()
        w16s = [w16] + [w16.clone() for _ in range(weight_copies(m, n * k * 2, l2_bytes) - 1)]
        row["weight_copies_fp16"] = len(w16s)
        row["fp16_cublas_s"] = gpu_time_per_call([lambda w=w: torch.matmul(a16, w.t(), out=out16) for w in w16s])
        del w16s
    torch.cuda.empty_cache()
    return row


def gemm_order(shapes, ms) -> list:
    """(m, shape) pairs, the targets' M values (<= SMALL_M, >= LARGE_M) first."""
    first = [m for m in ms if m <= SMALL_M or m >= LARGE_M]
    rest = [m for m in ms if m not in first]
    return [(m, s) for group in (first, rest) for m in group for s in shapes]


def gemm_ms(quick: bool) -> list:
    return [1, 2, 8, 16, 256, 1374, 2048, 2748] if quick else sorted(set(POW2_M + VGGT_ROWS_M))


def run_gemm(ctx, shapes, quick: bool, group: int = 128) -> list:
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2 ** 20)
    rows = []
    for m, s in ctx.iterate(gemm_order(shapes, gemm_ms(quick)), "rows"):
        rows.append({**bench_shape(m, s["k"], s["n"], group, l2), "layers": s["layers"]})
        ctx.data = rows
    return rows


def run_algos(ctx, shapes, group: int = 128) -> list:
    """Each forced algo where it may apply: what the dispatch thresholds are tuned from."""
    from qvggt_deploy.ops import w4a16

    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2 ** 20)
    rows = []
    for m, s in ctx.iterate([(m, s) for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048) for s in shapes],
                            "rows"):
        algos = tuple(a for a in w4a16.ALGOS if a != "auto" and not (
            (a == "gemv" and m > 8) or (a == "mma16" and m > 256) or (a == "mma128" and m < 128)))
        rows.append(bench_shape(m, s["k"], s["n"], group, l2, algos=algos))
        ctx.data = rows
    return rows


# ------------------------------------------------------------------------------------------ e2e


def set_tf32(on: bool) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    return {"matmul": on, "cudnn": on}


def _wanted(name, _module):
    return name.startswith(("aggregator.", "camera_head."))


def to_mode(model, mode: str, current: str, group: int) -> dict:
    """Move ``model`` from mode ``current`` to ``mode`` (fp32 -> fp16 -> w4a16 -> hybrid, one way)."""
    from qvggt_deploy.ops.linear import W4A16Linear, convert_model_to_w4a16, rtn_w4a16_layers

    info = {}
    if mode in ("fp16", "w4a16", "w4a16_hybrid") and current in ("fp32", "fp32_tf32"):
        model.aggregator.half()  # heads stay fp32: VGGT.forward feeds them fp32 tokens
    if mode in ("w4a16", "w4a16_hybrid") and current not in ("w4a16", "w4a16_hybrid"):
        layers = rtn_w4a16_layers(model, group, filter_fn=_wanted)
        convert_model_to_w4a16(model, layers)
        del layers
    if mode.startswith("w4a16"):
        modules = [m for m in model.modules() if isinstance(m, W4A16Linear)]
        info["converted_linears"] = len(modules)
        info["unconverted_linears"] = sorted(name for name, mod in model.named_modules()
                                             if isinstance(mod, torch.nn.Linear) and _wanted(name, mod))
        if mode == "w4a16_hybrid" and not all(hasattr(mod, "cublas_min_m") for mod in modules):
            raise RuntimeError("W4A16Linear has no cublas_min_m here: the hybrid mode is not available")
        for mod in modules:
            if hasattr(mod, "cublas_min_m"):
                mod.cublas_min_m = 1024 if mode == "w4a16_hybrid" else None
    tensors = list(model.parameters()) + list(model.buffers())
    info["weight_bytes"] = sum(t.numel() * t.element_size() for t in tensors)
    return info


def e2e_plan(modes, frames) -> list:
    return [(mode, s) for mode in modes for s in frames]


def e2e_run(model, mode: str, s: int, info: dict, side: int, reps: int, on_gpu: bool, device, reference: dict) -> dict:
    """One timed configuration: warm-up, ``reps`` runs, peak memory, outputs against FP32."""
    tf32 = set_tf32(mode == "fp32_tf32")
    images = torch.rand(s, 3, side, side, generator=torch.Generator().manual_seed(s)).to(device)
    if mode not in ("fp32", "fp32_tf32"):
        images = images.half()
    with torch.no_grad():
        model(images)  # warm-up
        if on_gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            out = model(images)
            if on_gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    set_tf32(False)
    row = {**info, "frames": s, "image_size": side, "tf32": tf32, "latency_s": statistics.median(times),
           "latency_all_s": times, "peak_memory_bytes": torch.cuda.max_memory_allocated() if on_gpu else None}
    outputs = {key: out[key].float().cpu() for key in ("pose_enc", "depth", "world_points")}
    if mode == "fp32":
        reference[s] = outputs
    elif s in reference:
        row["rel_l2_vs_fp32"] = {key: ((v - reference[s][key]).norm() / reference[s][key].norm()).item()
                                 for key, v in outputs.items()}
    return row


def run_e2e(ctx=None, device="cuda", preset: str = PRESET, frames=(2, 8), group: int = 128,
            modes=tuple(E2E_MODES), reps: int = 3, size: int | None = None) -> dict:
    """Latency and peak memory per mode and frame count, from one randomly initialised model
    taken through the modes in order; outputs compared with FP32 (TF32 off)."""
    from qvggt_deploy.model import build_model, get_preset

    device = torch.device(device)
    on_gpu = device.type == "cuda"
    cfg = get_preset(preset).replace(enable_track=False)
    doc = {"preset": preset, "weights": "random (seed 0): latency and memory only, outputs are not meaningful",
           "track_head": False, "group": group, "modes": {m: E2E_MODES[m] for m in modes}, "runs": []}
    t0 = time.perf_counter()
    model = build_model(cfg, seed=0, device=device)
    doc["build_s"] = time.perf_counter() - t0
    current, info, reference = "fp32", {}, {}
    plan = e2e_plan(modes, frames)
    items = ctx.iterate(plan, "runs") if ctx is not None else plan
    try:
        for mode, s in items:
            try:
                if mode != current or not info:
                    info = {}
                    info = {"mode": mode, **to_mode(model, mode, current, group)}
                    current = mode
                doc["runs"].append(e2e_run(model, mode, s, info, size or cfg.img_size, reps, on_gpu, device, reference))
            except Exception as exc:  # recorded; the next run still goes
                doc["runs"].append({"mode": mode, "frames": s, "error": repr(exc)})
                if on_gpu:
                    torch.cuda.empty_cache()
            if ctx is not None:
                ctx.data = doc
    finally:
        set_tf32(False)
        del model
        if on_gpu:
            torch.cuda.empty_cache()
    return doc


# ------------------------------------------------------------------------------ ratios, targets


def _ratio(num, den):
    return num / den if num and den else None


def gemm_ratios(rows) -> list:
    """Per (K, N, M): cuBLAS FP16 time over ours (> 1: ours faster), for the library's dispatch
    (``auto``), our dequantiser + cuBLAS, and the better of the two."""
    out = []
    for r in sorted(rows or [], key=lambda r: (r["k"], r["n"], r["m"])):
        if "fp16_cublas_s" not in r:
            continue
        auto = _ratio(r["fp16_cublas_s"], r.get("w4a16_auto_s"))
        deq = _ratio(r["fp16_cublas_s"], r.get("dequant_cublas_s"))
        out.append({"k": r["k"], "n": r["n"], "m": r["m"], "kernel_vs_cublas_fp16": auto,
                    "dequant_cublas_vs_cublas_fp16": deq,
                    "best_vs_cublas_fp16": max([x for x in (auto, deq) if x is not None], default=None)})
    return out


def e2e_ratios(e2e) -> dict:
    """Per frame count and W4A16 mode: speed-ups over FP32 (TF32 off, on) and FP16, latency over FP16."""
    lat = {(r["mode"], r["frames"]): r["latency_s"] for r in (e2e or {}).get("runs", []) if "latency_s" in r}
    out = {}
    for frames in sorted({s for _, s in lat}):
        per = {}
        for mode in ("w4a16", "w4a16_hybrid"):
            mine = lat.get((mode, frames))
            if mine is None:
                continue
            per[mode] = {"vs_fp32_tf32_off": _ratio(lat.get(("fp32", frames)), mine),
                         "vs_fp32_tf32_on": _ratio(lat.get(("fp32_tf32", frames)), mine),
                         "vs_fp16": _ratio(lat.get(("fp16", frames)), mine),
                         "latency_over_fp16": _ratio(mine, lat.get(("fp16", frames)))}
        per["fp16_vs_fp32_tf32_off"] = _ratio(lat.get(("fp32", frames)), lat.get(("fp16", frames)))
        out[str(frames)] = per
    return out


def weight_ratios(weights) -> dict:
    if not weights:
        return {}
    return {part: {"fp16_over_w4a16": _ratio(weights[part]["fp16_bytes"], weights[part]["w4a16_bytes"]),
                   "fp32_over_w4a16": _ratio(weights[part]["fp32_bytes"], weights[part]["w4a16_bytes"])}
            for part in ("linears", "model")}


def _target(rule, cases, bound, at_least=True, expected=None, key="value"):
    """A target over ``cases`` (dicts with ``key``): passed True only when every expected case was
    measured and meets ``bound``; False when a measured case misses it; None otherwise."""
    measured = [c for c in cases if c.get(key) is not None]
    ok = (lambda v: v >= bound) if at_least else (lambda v: v <= bound)
    failing = [c for c in measured if not ok(c[key])]
    missing = [e for e in (expected or []) if e not in [c.get("case") for c in measured]]
    worst = (min if at_least else max)(measured, key=lambda c: c[key]) if measured else None
    passed = False if failing else (True if measured and not missing else None)
    return {"rule": rule, "bound": bound, "passed": passed, "worst": worst, "n_measured": len(measured),
            "n_failing": len(failing), "missing": missing, "cases": measured}


def targets(report) -> dict:
    """The issue's done-means from the measured numbers."""
    shapes = report.get("shapes") or []
    ratios = gemm_ratios(report.get("gemm"))
    out = {}
    for name, pick, bound in (("gemm_large_m_vs_cublas_fp16", lambda m: m >= LARGE_M, 0.9),
                              ("gemm_small_m_vs_fp16", lambda m: m <= SMALL_M, 2.0)):
        cases = [{"case": f"K{r['k']} N{r['n']} M{r['m']}", "value": r["kernel_vs_cublas_fp16"],
                  "best_path": r["best_vs_cublas_fp16"]} for r in ratios if pick(r["m"])]
        expected = [f"K{s['k']} N{s['n']} M{m}" for s in shapes for m in report.get("gemm_m", []) if pick(m)]
        out[name] = _target(TARGETS[name], cases, bound, expected=expected)
    e2e = e2e_ratios(report.get("e2e"))
    frames = ["2", "8"]
    for name, key, bound, at_least in (("e2e_vs_fp32_tf32_off", "vs_fp32_tf32_off", 2.8, True),
                                       ("e2e_vs_fp32_tf32_on", "vs_fp32_tf32_on", 2.8, True),
                                       ("e2e_vs_fp16", "latency_over_fp16", 1.1, False)):
        cases = [{"case": f"{s} frames", "value": e2e.get(s, {}).get("w4a16", {}).get(key),
                  "w4a16_hybrid": e2e.get(s, {}).get("w4a16_hybrid", {}).get(key)} for s in frames]
        out[name] = _target(TARGETS[name], cases, bound, at_least, expected=[f"{s} frames" for s in frames])
    w = weight_ratios(report.get("weights"))
    for name, part in (("weights_linears_vs_fp16", "linears"), ("weights_model_vs_fp16", "model")):
        cases = [{"case": part, "value": w.get(part, {}).get("fp16_over_w4a16")}]
        out[name] = _target(TARGETS[name], cases, 3.5, expected=[part])
    return out


def derive(report) -> dict:
    """``ratios`` and ``targets``, recomputed before every write of the report."""
    return {"ratios": {"gemm": gemm_ratios(report.get("gemm")), "e2e": e2e_ratios(report.get("e2e")),
                       "weights": weight_ratios(report.get("weights"))},
            "targets": targets(report)}


# ----------------------------------------------------------------------------------------- main


def parse_budgets(values) -> dict:
    budgets = dict(DEFAULT_BUDGETS)
    for text in values or []:
        name, sep, seconds = text.partition("=")
        if not sep or name not in budgets:
            raise SystemExit(f"gpu_check: --budget {text!r}: expected NAME=SECONDS, NAME one of {', '.join(budgets)}")
        try:
            budgets[name] = float(seconds)
        except ValueError:
            raise SystemExit(f"gpu_check: --budget {text!r}: {seconds!r} is not a number") from None
    return budgets


def sections(args, budgets: dict, shapes: list) -> list:
    frames = (2,) if args.quick else (2, 8)
    lib = ("library",)
    return [
        Section("env", run_env, budgets["env"]),
        Section("library", run_library, budgets["library"]),
        Section("correctness", lambda ctx: run_correctness(ctx, shapes, args.quick), budgets["correctness"], needs=lib),
        Section("weights", lambda ctx: run_weights(ctx, PRESET, args.group), budgets["weights"]),
        Section("gemm", lambda ctx: run_gemm(ctx, shapes, args.quick), budgets["gemm"], needs=lib, min_s=5),
        Section("e2e", lambda ctx: run_e2e(ctx, frames=frames, group=args.group), budgets["e2e"], needs=lib, min_s=20,
                skip="--skip-e2e" if args.skip_e2e else None),
        Section("algos", lambda ctx: run_algos(ctx, shapes), budgets["algos"], needs=lib, min_s=5,
                skip="--skip-algos" if args.skip_algos else None),
    ]


def exit_code(report) -> int:
    statuses = [s["status"] for s in report["sections"].values() if not s.get("reason", "").startswith("--skip")]
    if "failed" in statuses or (report.get("correctness") or {}).get("n_failed"):
        return 1
    return 0 if all(s == "ok" for s in statuses) else 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON report to write (replaced after every section and row)")
    parser.add_argument("--quick", action="store_true", help="fewer M values and frames (about 1 minute)")
    parser.add_argument("--skip-e2e", action="store_true", help="no end-to-end VGGT-1B section")
    parser.add_argument("--skip-algos", action="store_true", help="no per-algo timings")
    parser.add_argument("--group", type=int, default=128, help="group size of the weights section and the "
                        "end-to-end model (default 128)")
    parser.add_argument("--budget-total", type=float, default=480.0,
                        help="wall seconds for the whole run (default 480, for `timeout 540`)")
    parser.add_argument("--budget", action="append", default=[], metavar="SECTION=SECONDS",
                        help="a section's wall-clock budget (defaults: "
                             + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_BUDGETS.items()) + ")")
    args = parser.parse_args(argv)
    budgets = parse_budgets(args.budget)

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing measured", file=sys.stderr)
        return 2
    set_tf32(False)  # FP32 means FP32, for the baseline and the references; e2e's fp32_tf32 turns it on
    shapes = vggt_shapes(PRESET, 128)
    header = {"schema": 2, "command": " ".join([Path(sys.argv[0]).name] + list(argv if argv is not None else sys.argv[1:])),
              "quick": args.quick, "budget_total_s": args.budget_total, "targets_rules": TARGETS,
              "shapes": shapes, "gemm_m": gemm_ms(args.quick)}
    runner = SectionRunner(args.out, header, total_s=args.budget_total, derive=derive,
                           log=lambda msg: print(f"gpu_check: {msg}", file=sys.stderr, flush=True))
    report = runner.run(sections(args, budgets, shapes))
    code = exit_code(report)
    report["exit_code"] = code
    runner.write()
    summary(report)
    print(f"gpu_check: exit {code}; report in {args.out}", file=sys.stderr)
    return code


def summary(report: dict) -> None:
    """A few lines on stderr; the JSON holds everything."""
    for name, entry in report["sections"].items():
        extra = entry.get("reason") or entry.get("error") or ""
        progress = entry.get("progress")
        if progress and "total" in progress:
            extra += f" {progress.get('done', 0)}/{progress['total']} {progress.get('unit', '')}"
        print(f"  {name:12s} {entry['status']:20s} {entry.get('wall_s', 0):6.1f} s {extra}", file=sys.stderr)
    corr = report.get("correctness")
    if corr:
        print(f"correctness: {corr['n_cases'] - corr['n_failed']}/{corr['n_cases']} passed", file=sys.stderr)
        for case in corr["cases"]:
            if not case["passed"]:
                print(f"  FAILED {case}", file=sys.stderr)
    for name, t in report.get("targets", {}).items():
        worst = t["worst"]
        where = f" (worst {worst['case']}: {worst['value']:.2f})" if worst else ""
        print(f"target {name}: {t['passed']}{where}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
