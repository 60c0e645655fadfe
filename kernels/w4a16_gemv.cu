// CUDA-core kernels of libqvggt_w4a16: the small-M GEMV path, the split-K reduction and the
// standalone dequantiser. Packed layout, rules and arithmetic: the LAYOUT block in w4a16_gemm.cu.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "w4a16_common.cuh"
#include "w4a16_internal.h"

namespace qvggt {
namespace {

// GEMV: CTA (nb, z) computes the 16 output columns of n16 block nb over K slice z (split-K: the
// grid is N/16 x splits); its 8 warps take the slice's chunks round-robin and meet in shared memory.
// At M <= 8 the weight stream (N*K/2 bytes) is the cost, so the kernel is built around keeping
// 16-byte weight loads in flight:
//  - a lane's 4 words of one chunk are one 16-byte load and a warp's are 512 contiguous bytes;
//  - each warp issues kGemvUnroll chunk loads before it dequantises the first;
//  - K is split so that the grid has at least 2 CTAs per SM (VGGT's 1024-wide layers have only
//    64 n16 blocks for 132 H100 SMs).
// Split-K reduction, fused: each CTA stores its fp32 sums in the workspace, then takes a ticket
// from its block's arrival counter; the CTA that draws the last ticket adds the slices in slice
// order 0, 1, ..., splits-1 (the same order whoever arrives last, so results are deterministic),
// adds the bias and writes fp16. No second kernel.
// No tensor cores: below ~4 rows an m16 mma would be mostly padding, and FP32 FMAs on the
// dequantised fp16 weights give the same products (exact) and FP32 sums as the mma path.
constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / 32;
constexpr int kGemvUnroll = 4;  // up to 4 x 8 warps x 512 B = 16 KB in flight per CTA

template <int MAXM>
__global__ void __launch_bounds__(kGemvThreads) w4a16_gemv_kernel(Problem p) {
    __shared__ float partial[kGemvWarps][MAXM][16];
    __shared__ bool last_cta;
    const half* QVGGT_RESTRICT A = static_cast<const half*>(p.a);
    const uint4* QVGGT_RESTRICT QW = static_cast<const uint4*>(p.qweight);
    const half* QVGGT_RESTRICT S = static_cast<const half*>(p.scales);

    const int nb = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int nb_total = p.n / 16;
    const int kc_total = p.k / 64;
    const int kc_per = (kc_total + p.splits - 1) / p.splits;
    const int kc_begin = blockIdx.y * kc_per;
    const int kc_end = min(kc_begin + kc_per, kc_total);  // > kc_begin: the host never makes empty slices
    const int col_g = nb * 16 + g;

    float acc[MAXM][2];
#pragma unroll
    for (int i = 0; i < MAXM; ++i) acc[i][0] = acc[i][1] = 0.0f;

    for (int kc0 = kc_begin + warp; kc0 < kc_end; kc0 += kGemvWarps * kGemvUnroll) {
        uint4 w[kGemvUnroll];
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
            const int kc = kc0 + u * kGemvWarps;
            w[u] = kc < kc_end ? __ldg(QW + (static_cast<size_t>(kc) * nb_total + nb) * 32 + lane)
                               : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < kGemvUnroll; ++u) {
            const int kc = kc0 + u * kGemvWarps;
            if (kc >= kc_end) continue;
            const uint32_t words[4] = {w[u].x, w[u].y, w[u].z, w[u].w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int k = kc * 64 + j * 16;
                const half* srow = S + static_cast<size_t>(k / p.group) * p.n;
                uint32_t frag[4];
                dequant_word(words[j], __half2half2(srow[col_g]), __half2half2(srow[col_g + 8]), frag);
                const float2 w_lo = __half22float2(as_half2(frag[0]));  // column g,   k + 2t, 2t+1
                const float2 w_hi = __half22float2(as_half2(frag[1]));  // column g,   k + 2t+8, 2t+9
                const float2 v_lo = __half22float2(as_half2(frag[2]));  // column g+8, k + 2t, 2t+1
                const float2 v_hi = __half22float2(as_half2(frag[3]));  // column g+8, k + 2t+8, 2t+9
#pragma unroll
                for (int mi = 0; mi < MAXM; ++mi) {
                    if (mi < p.m) {
                        const half* arow = A + static_cast<size_t>(mi) * p.k + k + 2 * t;
                        const float2 a_lo = __half22float2(__ldg(reinterpret_cast<const half2*>(arow)));
                        const float2 a_hi = __half22float2(__ldg(reinterpret_cast<const half2*>(arow + 8)));
                        float s0 = acc[mi][0], s1 = acc[mi][1];
                        s0 = fmaf(w_lo.x, a_lo.x, s0);
                        s0 = fmaf(w_lo.y, a_lo.y, s0);
                        s0 = fmaf(w_hi.x, a_hi.x, s0);
                        s0 = fmaf(w_hi.y, a_hi.y, s0);
                        s1 = fmaf(v_lo.x, a_lo.x, s1);
                        s1 = fmaf(v_lo.y, a_lo.y, s1);
                        s1 = fmaf(v_hi.x, a_hi.x, s1);
                        s1 = fmaf(v_hi.y, a_hi.y, s1);
                        acc[mi][0] = s0;
                        acc[mi][1] = s1;
                    }
                }
            }
        }
    }

    // The 4 lanes of a group hold disjoint k of the same two columns: butterfly-sum them, then
    // the 8 warps (disjoint chunks) through shared memory.
#pragma unroll
    for (int mi = 0; mi < MAXM; ++mi) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            float v = acc[mi][c];
            v += __shfl_xor_sync(0xffffffffu, v, 1);
            v += __shfl_xor_sync(0xffffffffu, v, 2);
            acc[mi][c] = v;
        }
        if (t == 0) {
            partial[warp][mi][g] = acc[mi][0];
            partial[warp][mi][g + 8] = acc[mi][1];
        }
    }
    __syncthreads();
    const int mi = tid >> 4, c = tid & 15;  // thread (mi, c) owns output (mi, nb*16 + c)
    const int col = nb * 16 + c;
    const bool owner = tid < MAXM * 16 && mi < p.m;
    float s = 0.0f;
    if (owner) {
#pragma unroll
        for (int w8 = 0; w8 < kGemvWarps; ++w8) s += partial[w8][mi][c];
    }
    if (p.splits > 1) {
        if (owner) p.partials[(static_cast<size_t>(blockIdx.y) * p.m + mi) * p.n + col] = s;
        if (!last_cta_of_tile(p.counters + nb, p.splits, &last_cta)) return;
        if (owner) {
            s = 0.0f;
            for (int z = 0; z < p.splits; ++z) s += __ldcg(p.partials + (static_cast<size_t>(z) * p.m + mi) * p.n + col);
        }
    }
    if (owner) {
        if (p.bias != nullptr) s += __half2float(static_cast<const half*>(p.bias)[col]);
        static_cast<half*>(p.out)[static_cast<size_t>(mi) * p.n + col] = __float2half_rn(s);
    }
}

// One thread per packed word: decode it exactly as the GEMM does (dequant_word) and scatter the
// 8 weights to their (n, k) places in the PyTorch-layout matrix.
__global__ void dequantize_kernel(const uint32_t* QVGGT_RESTRICT qw, const half* QVGGT_RESTRICT scales,
                                  half* QVGGT_RESTRICT w_out, int n, int k, int group) {
    const size_t words = static_cast<size_t>(n) * k / 8;
    const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= words) return;
    const int j = static_cast<int>(i & 3);
    const int lane = static_cast<int>((i >> 2) & 31);
    const size_t rest = i >> 7;
    const int nb_total = n / 16;
    const int nb = static_cast<int>(rest % nb_total);
    const int kc = static_cast<int>(rest / nb_total);
    const int g = lane >> 2, t = lane & 3;
    const int k0 = (kc * 4 + j) * 16;
    const int col = nb * 16 + g;
    const half* srow = scales + static_cast<size_t>(k0 / group) * n;
    uint32_t frag[4];
    dequant_word(qw[i], __half2half2(srow[col]), __half2half2(srow[col + 8]), frag);
    half* row_g = w_out + static_cast<size_t>(col) * k + k0 + 2 * t;
    half* row_g8 = w_out + static_cast<size_t>(col + 8) * k + k0 + 2 * t;
    *reinterpret_cast<uint32_t*>(row_g) = frag[0];
    *reinterpret_cast<uint32_t*>(row_g + 8) = frag[1];
    *reinterpret_cast<uint32_t*>(row_g8) = frag[2];
    *reinterpret_cast<uint32_t*>(row_g8 + 8) = frag[3];
}

// out[m][n] = bias[n], two columns per thread (N % 16 == 0, out and bias 4-byte aligned).
__global__ void fill_bias_kernel(const half2* QVGGT_RESTRICT bias, half2* QVGGT_RESTRICT out, int m, int n2) {
    const size_t pairs = static_cast<size_t>(m) * n2;
    const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < pairs) out[i] = bias[i % n2];
}

}  // namespace

cudaError_t launch_fill_bias(const void* bias, void* out, int m, int n, cudaStream_t stream) {
    const size_t pairs = static_cast<size_t>(m) * n / 2;
    const unsigned blocks = static_cast<unsigned>((pairs + 255) / 256);
    fill_bias_kernel<<<blocks, 256, 0, stream>>>(static_cast<const half2*>(bias), static_cast<half2*>(out), m, n / 2);
    return cudaGetLastError();
}

cudaError_t launch_gemv(const Problem& p, cudaStream_t stream) {
    const dim3 grid(p.n / 16, p.splits);
    if (p.splits > 1) {
        const cudaError_t err = cudaMemsetAsync(p.counters, 0, sizeof(int) * (p.n / 16), stream);
        if (err != cudaSuccess) return err;
    }
    // Instantiations for M bounds 1, 2, 4, 8: the FMA work is MAXM-proportional, so a 1-row
    // call must not pay for 8 rows.
    if (p.m <= 1) w4a16_gemv_kernel<1><<<grid, kGemvThreads, 0, stream>>>(p);
    else if (p.m <= 2) w4a16_gemv_kernel<2><<<grid, kGemvThreads, 0, stream>>>(p);
    else if (p.m <= 4) w4a16_gemv_kernel<4><<<grid, kGemvThreads, 0, stream>>>(p);
    else w4a16_gemv_kernel<8><<<grid, kGemvThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

cudaError_t launch_dequantize(const void* qweight, const void* scales, void* w_out, int n, int k, int group,
                              cudaStream_t stream) {
    const size_t words = static_cast<size_t>(n) * k / 8;
    const unsigned blocks = static_cast<unsigned>((words + 255) / 256);
    dequantize_kernel<<<blocks, 256, 0, stream>>>(static_cast<const uint32_t*>(qweight),
                                                  static_cast<const half*>(scales), static_cast<half*>(w_out),
                                                  n, k, group);
    return cudaGetLastError();
}

}  // namespace qvggt
