"""Paper estimates for the W4A16 kernel (no GPU): bytes moved at small M, and first-guess M
thresholds for the dispatch table (fused kernel below, dequantise + cuBLAS FP16 above).

    python benchmarks/paper_estimate.py              # both tables, markdown (kernels/README.md)
    python benchmarks/paper_estimate.py --thresholds # the JSON rows of qvggt_deploy/ops/w4a16_dispatch.json

Every device constant is a datasheet figure or an explicit assumption, listed in DEVICES; the
model is a roofline with a fixed cost per launch, nothing here is measured.

Small M: at M <= 16 both W4A16 and FP16 are bound by the weight stream. FP16 reads 2*N*K bytes;
W4A16 reads N*K/2 of INT4, N*K*2/group of scales and writes/reads the split-K partials. A kernel
reaches the bandwidth only with latency * bandwidth bytes in flight (Little's law); the table
gives that need per SM next to what one CTA of each kernel keeps in flight.

Thresholds: above M the fused kernel (mma.sync) runs at FUSED_EFFICIENCY of cuBLAS's FP16 rate;
dequantising costs about 4*N*K bytes of extra traffic (read INT4, write fp16, cuBLAS reads fp16
instead of INT4) plus one launch. cuBLAS wins from
    M* = (4 N K / BW + t_launch) * P / (2 N K (1 / efficiency - 1)).
"""
from __future__ import annotations

import argparse
import json
import math

# (K, N) = (in_features, out_features) of VGGT-1B's Linear layers.
AGGREGATOR_KN = [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024)]
CAMERA_HEAD_KN = [(2048, 6144), (2048, 2048), (2048, 8192), (8192, 2048), (2048, 1024)]
GROUP = 128

DEVICES = {
    # bw: DRAM bytes/s (datasheet); latency: DRAM round trip seen by a load (assumed); sms;
    # fp16_flops: dense FP16 tensor-core rate cuBLAS reaches (assumed, below the datasheet peak);
    # fused_efficiency: our mma.sync kernel's share of it at large M (kernels/README.md);
    # launch_s: one extra kernel launch inside a CUDA graph / TensorRT engine (assumed).
    "sm_90": dict(name="H100 SXM", bw=3.35e12, latency=0.6e-6, sms=132, fp16_flops=700e12,
                  fused_efficiency=0.6, launch_s=4e-6),
    "sm_87": dict(name="Jetson AGX Orin", bw=204.8e9, latency=0.5e-6, sms=16, fp16_flops=40e12,
                  fused_efficiency=0.85, launch_s=8e-6),
}

GEMV_CTAS_PER_SM_RESIDENT = 8  # 256 threads, <= 64 registers at M <= 4: 2048 threads per SM


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def gemv_splits(n: int, k: int, sms: int) -> int:
    """kernels/w4a16_gemm.cu gemv_splits (2 CTAs per SM, slices >= 4 chunks, <= 16 slices)."""
    kc = k // 64
    s = min(ceil_div(2 * sms, n // 16), 16, max(1, kc // 4))
    s = max(1, min(s, kc))
    return ceil_div(kc, ceil_div(kc, s))


def gemv_in_flight(k: int, n: int, sms: int, splits: int) -> float:
    """Weight bytes the GEMV has in flight at once: each resident CTA's 8 warps issue up to 4
    chunk loads of 512 B each, and no CTA has more chunks than its K slice."""
    ctas = (n // 16) * splits
    per_cta = min(32, ceil_div(k // 64, splits)) * 512
    return min(weight_bytes_w4a16(k, n), min(ctas, GEMV_CTAS_PER_SM_RESIDENT * sms) * per_cta)


def weight_bytes_w4a16(k: int, n: int) -> float:
    return n * k / 2 + n * (k // GROUP) * 2


def small_m_rows(arch: str, m: int = 16):
    """Bytes moved at M rows, bandwidth-bound times, and (GEMV, M <= 4) bytes in flight before
    and after split-K, with the time t = L + max(bytes / BW, (bytes / in_flight - 1) * L) for a
    load latency L (Little's law; FP16 cuBLAS assumed to keep enough in flight)."""
    d = DEVICES[arch]
    bw, lat = d["bw"], d["latency"]
    rows = []
    for k, n in AGGREGATOR_KN + CAMERA_HEAD_KN:
        fp16 = 2 * n * k + 2 * m * k + 2 * m * n
        splits = gemv_splits(n, k, d["sms"])
        ours = weight_bytes_w4a16(k, n) + 2 * m * k + 2 * m * n + (splits * m * n * 4 * 2 if splits > 1 else 0)
        old_fly, new_fly = gemv_in_flight(k, n, d["sms"], 1), gemv_in_flight(k, n, d["sms"], splits)

        def latency_time(nbytes, fly):  # one latency, then the stream at BW or Little's law's rate
            return lat + max(nbytes / bw, (nbytes / fly - 1) * lat)

        rows.append(dict(k=k, n=n, fp16_bytes=fp16, w4a16_bytes=ours, fp16_us=fp16 / bw * 1e6,
                         w4a16_us=ours / bw * 1e6, ratio=fp16 / ours, splits=splits,
                         ctas_old=n // 16, ctas_new=n // 16 * splits, fly_old=old_fly, fly_new=new_fly,
                         ratio_old=latency_time(fp16, fp16) / latency_time(ours, old_fly),
                         ratio_new=latency_time(fp16, fp16) / latency_time(ours, new_fly)))
    return rows


def threshold(arch: str, k: int, n: int) -> int:
    d = DEVICES[arch]
    extra_s = 4 * n * k / d["bw"] + d["launch_s"]
    gain_s_per_row = 2 * n * k / d["fp16_flops"] * (1 / d["fused_efficiency"] - 1)
    return int(math.ceil(extra_s / gain_s_per_row / 64) * 64)


def markdown() -> str:
    lines = []
    for arch, d in DEVICES.items():
        lines.append(f"{arch} ({d['name']}: {d['bw'] / 1e9:.0f} GB/s, {d['sms']} SMs, assumed latency "
                     f"{d['latency'] * 1e6:.1f} us -> {d['bw'] * d['latency'] / 2**10:.0f} KiB in flight "
                     f"({d['bw'] * d['latency'] / d['sms'] / 2**10:.1f} KiB per SM) to reach the bandwidth), "
                     f"M = 4 (GEMV), group {GROUP}; split-K partials counted twice (store, reload):")
        lines.append("")
        lines.append("| K x N | FP16 bytes | W4A16 bytes | FP16 us | W4A16 us | bandwidth ratio | GEMV CTAs "
                     "old -> new (splits) | in flight old -> new | with latency: old -> new |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for r in small_m_rows(arch, m=4):
            lines.append(f"| {r['k']} x {r['n']} | {r['fp16_bytes'] / 2**20:.2f} MiB | "
                         f"{r['w4a16_bytes'] / 2**20:.2f} MiB | {r['fp16_us']:.2f} | {r['w4a16_us']:.2f} | "
                         f"{r['ratio']:.2f}x | {r['ctas_old']} -> {r['ctas_new']} ({r['splits']}) | "
                         f"{r['fly_old'] / 2**10:.0f} -> {r['fly_new'] / 2**10:.0f} KiB | "
                         f"{r['ratio_old']:.2f}x -> {r['ratio_new']:.2f}x |")
        lines.append("")
    lines.append("First-guess thresholds M* (dequantise + cuBLAS from M* rows on):")
    lines.append("")
    lines.append("| K x N | " + " | ".join(DEVICES) + " |")
    lines.append("|---|" + "---|" * len(DEVICES))
    for k, n in AGGREGATOR_KN + CAMERA_HEAD_KN:
        lines.append(f"| {k} x {n} | " + " | ".join(str(threshold(a, k, n)) for a in DEVICES) + " |")
    return "\n".join(lines)


def threshold_rows() -> dict:
    return {arch: [{"k": k, "n": n, "cublas_min_m": threshold(arch, k, n)} for k, n in AGGREGATOR_KN + CAMERA_HEAD_KN]
            for arch in DEVICES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds", action="store_true", help="print the dispatch table's default rows as JSON")
    args = parser.parse_args()
    print(json.dumps(threshold_rows(), indent=2) if args.thresholds else markdown())


if __name__ == "__main__":
    main()
