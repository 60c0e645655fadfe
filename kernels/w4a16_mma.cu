// Tensor-core W4A16 GEMM (the large-M path, also used with split-K for 16 < M <= 256).
// Packed layout, rules and arithmetic: the LAYOUT block at the top of w4a16_gemm.cu.
//
// Work decomposition (one CTA = 8 warps = 256 threads; BN = 128 output columns, BK = 64):
//
//        N ------------------------------------------------>
//     M  +-------------+-------------+-------------+----
//     |  | CTA (0,0,z) | CTA (1,0,z) | CTA (2,0,z) |        blockIdx.x: 128-column tile
//     |  | BM x 128    |             |             |        blockIdx.y: BM-row tile
//     v  +-------------+-------------+-------------+----    blockIdx.z: K slice (split-K)
//
//   inside a CTA tile (BM = 128 shown; warps WARPS_M x WARPS_N = 2 x 4, each 64 x 32):
//        +--------+--------+--------+--------+
//        | warp 0 | warp 1 | warp 2 | warp 3 |   a warp owns MT = 4 m16 tiles x 2 n16 blocks
//        +--------+--------+--------+--------+   (= 4 n8 mma tiles): 16 mma.m16n8k16 per k16
//        | warp 4 | warp 5 | warp 6 | warp 7 |   step, fed by 4 ldmatrix.x4 (A) and 2 packed
//        +--------+--------+--------+--------+   words dequantised in registers (B)
//
// Pipeline: STAGES shared-memory stages, each one 64-deep K chunk (= one layout chunk kc):
// A tile BM x 64 fp16 (XOR-swizzled rows), B 8 n16 blocks x 512 bytes of packed words, and
// 2 x 128 fp16 scales. cp.async fills stage (i + STAGES - 1) while the warps compute stage i.
// STAGES is 8 for the 16-row tile (M <= 16 streams the weights: 7 x 6.5 KB in flight per CTA,
// 52 KB of shared memory) and 4 for the larger tiles (compute-bound; 4 keeps the 128-row tile at
// 82 KB, within sm_86/sm_89's 99 KB).
//
// Split-K (gridDim.z > 1): each CTA stores its fp32 tile in the workspace; the last CTA of the
// tile to arrive (last_cta_of_tile) adds the slices in slice order, adds the bias and writes fp16.
#include <atomic>
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "w4a16_common.cuh"
#include "w4a16_internal.h"

namespace qvggt {
namespace {

constexpr int kThreads = 256;  // 8 warps: enough to hide ldmatrix/mma latency with one CTA per SM
constexpr int kWarps = kThreads / 32;
constexpr int kBK = 64;        // = one layout chunk kc, so a stage's B tile is contiguous in memory

template <int BM, int WARPS_M, int STAGES>
struct Tile {
    static constexpr int kStages = STAGES;
    static constexpr int kWarpsN = kWarps / WARPS_M;
    static constexpr int kWarpM = BM / WARPS_M;     // rows per warp
    static constexpr int kWarpN = kMmaBN / kWarpsN; // columns per warp
    static constexpr int kMT = kWarpM / 16;         // m16 tiles per warp
    static constexpr int kNB = kWarpN / 16;         // n16 blocks (2 n8 mma tiles) per warp
    static constexpr int kAStage = BM * kBK * 2;    // bytes
    static constexpr int kBStage = (kMmaBN / 16) * 512;  // 8 n16 blocks x 32 lanes x 16 bytes
    static constexpr int kSStage = 2 * kMmaBN * 2;  // 2 scale rows (two 32-deep halves of the chunk)
    static constexpr int kSmem = kStages * (kAStage + kBStage + kSStage);
    static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "warp tile must be whole m16 x n16 blocks");
    static_assert(kThreads * 16 == kBStage, "one 16-byte B copy per thread per stage");
    static_assert(kSmem <= 99 * 1024, "must fit the per-block shared memory of sm_86/sm_89");
    static_assert(STAGES >= 2, "cp.async.wait_group<STAGES - 2> needs two stages");
};

// A tile row r holds 64 halves = 8 chunks of 16 bytes; chunk c is stored at c ^ (r % 8). The 8
// rows one ldmatrix phase reads (same logical chunk, consecutive rows) then fall into 8
// different 16-byte bank groups: conflict-free, without padding.
__device__ __forceinline__ int swizzle(int row, int chunk) { return row * kBK + ((chunk ^ (row & 7)) << 3); }

template <int BM, int WARPS_M, int STAGES>
__global__ void __launch_bounds__(kThreads) w4a16_mma_kernel(Problem p) {
    using T = Tile<BM, WARPS_M, STAGES>;
    constexpr int kStages = STAGES;
    extern __shared__ __align__(16) unsigned char smem[];
    half* sA = reinterpret_cast<half*>(smem);
    uint32_t* sB = reinterpret_cast<uint32_t*>(smem + kStages * T::kAStage);
    half* sS = reinterpret_cast<half*>(smem + kStages * (T::kAStage + T::kBStage));

    const half* QVGGT_RESTRICT A = static_cast<const half*>(p.a);
    const uint32_t* QVGGT_RESTRICT QW = static_cast<const uint32_t*>(p.qweight);
    const half* QVGGT_RESTRICT S = static_cast<const half*>(p.scales);

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int warp_m = warp / T::kWarpsN;
    const int warp_n = warp % T::kWarpsN;
    const int g = lane >> 2;  // mma "group": B column / C row within an 8-wide tile
    const int t = lane & 3;   // thread in group: selects k pairs / C column pairs
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * kMmaBN;
    const int nb_total = p.n / 16;
    const int kc_total = p.k / kBK;
    const int kc_per = (kc_total + p.splits - 1) / p.splits;
    const int kc_begin = blockIdx.z * kc_per;
    const int nk = min(kc_begin + kc_per, kc_total) - kc_begin;  // >= 1: the host never makes empty slices

    // Global -> shared copies of chunk kc into `stage`. Rows >= M and n16 blocks >= N/16 are
    // zero-filled, so the compute loop needs no bounds checks.
    auto load_stage = [&](int stage, int kc) {
        const int k0 = kc * kBK;
        half* dA = sA + stage * (BM * kBK);
#pragma unroll
        for (int it = 0; it < (BM * 8 + kThreads - 1) / kThreads; ++it) {
            const int i = tid + it * kThreads;
            if (BM * 8 % kThreads == 0 || i < BM * 8) {
                const int r = i >> 3, c = i & 7;
                const bool ok = m0 + r < p.m;
                const half* src = A + static_cast<size_t>(ok ? m0 + r : 0) * p.k + k0 + c * 8;
                cp_async16(dA + swizzle(r, c), src, ok);
            }
        }
        {
            const int nb = (n0 >> 4) + (tid >> 5);
            const bool ok = nb < nb_total;
            const uint32_t* src = QW + (static_cast<size_t>(kc) * nb_total + (ok ? nb : 0)) * 128 + (tid & 31) * 4;
            cp_async16(sB + stage * (T::kBStage / 4) + tid * 4, src, ok);
        }
        if (tid < 32) {
            // Row r covers k0 + 32r .. k0 + 32r + 31; group % 32 == 0 so one scale row suffices.
            const int r = tid >> 4, c = tid & 15;
            const int col = n0 + c * 8;
            const bool ok = col < p.n;
            const half* src = S + static_cast<size_t>((k0 + 32 * r) / p.group) * p.n + (ok ? col : 0);
            cp_async16(sS + stage * (2 * kMmaBN) + r * kMmaBN + c * 8, src, ok);
        }
    };

    float acc[T::kMT][2 * T::kNB][4];
#pragma unroll
    for (int i = 0; i < T::kMT; ++i)
#pragma unroll
        for (int j = 0; j < 2 * T::kNB; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < nk) load_stage(s, kc_begin + s);
        cp_async_commit();
    }

    for (int it = 0; it < nk; ++it) {
        // Chunk `it` has landed once at most STAGES-2 younger groups are pending; the barrier
        // also tells every warp that stage (it-1) % STAGES is no longer read, so it can be refilled.
        cp_async_wait<kStages - 2>();
        __syncthreads();
        const int next = it + kStages - 1;
        if (next < nk) load_stage(next % kStages, kc_begin + next);
        cp_async_commit();

        const int stage = it % kStages;
        const half* cA = sA + stage * (BM * kBK);
        const uint32_t* cB = sB + stage * (T::kBStage / 4);
        const half* cS = sS + stage * (2 * kMmaBN);

        // This lane's packed words for the 4 k16 steps of each of its n16 blocks (one 16-byte
        // load each; a warp reads 512 contiguous bytes, conflict-free) and the scales of its
        // two columns g and g+8 in both 32-deep halves of the chunk.
        uint32_t words[T::kNB][4];
        half2 s_g[2][T::kNB], s_g8[2][T::kNB];
#pragma unroll
        for (int b = 0; b < T::kNB; ++b) {
            const int nb_local = warp_n * T::kNB + b;
            const uint4 v = *reinterpret_cast<const uint4*>(cB + nb_local * 128 + lane * 4);
            words[b][0] = v.x;
            words[b][1] = v.y;
            words[b][2] = v.z;
            words[b][3] = v.w;
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                s_g[r][b] = __half2half2(cS[r * kMmaBN + nb_local * 16 + g]);
                s_g8[r][b] = __half2half2(cS[r * kMmaBN + nb_local * 16 + g + 8]);
            }
        }

#pragma unroll
        for (int j = 0; j < kBK / 16; ++j) {
            uint32_t a[T::kMT][4];
#pragma unroll
            for (int mt = 0; mt < T::kMT; ++mt) {
                const int row = warp_m * T::kWarpM + mt * 16 + (lane & 15);
                ldmatrix_x4(a[mt], cA + swizzle(row, 2 * j + (lane >> 4)));
            }
#pragma unroll
            for (int b = 0; b < T::kNB; ++b) {
                uint32_t frag[4];
                dequant_word(words[b][j], s_g[j >> 1][b], s_g8[j >> 1][b], frag);
#pragma unroll
                for (int mt = 0; mt < T::kMT; ++mt) {
                    mma_m16n8k16(acc[mt][2 * b], a[mt], frag[0], frag[1]);
                    mma_m16n8k16(acc[mt][2 * b + 1], a[mt], frag[2], frag[3]);
                }
            }
        }
    }
    cp_async_wait<0>();  // no copy may outlive the CTA's shared memory

    // Epilogue straight from the accumulators: each lane holds C[g][2t..2t+1] and C[g+8][2t..2t+1]
    // of every n8 tile; the two n8 tiles of an n16 block make full 32-byte row segments.
    const half* bias = static_cast<const half*>(p.bias);
    half* out = static_cast<half*>(p.out);
#pragma unroll
    for (int h = 0; h < 2 * T::kNB; ++h) {
        const int col = n0 + (warp_n * T::kNB + (h >> 1)) * 16 + (h & 1) * 8 + 2 * t;
        if (col >= p.n) continue;  // N % 16 == 0: a whole n16 block is in or out
        float2 bv = make_float2(0.0f, 0.0f);
        if (p.splits == 1 && bias != nullptr) bv = __half22float2(*reinterpret_cast<const half2*>(bias + col));
#pragma unroll
        for (int mt = 0; mt < T::kMT; ++mt) {
#pragma unroll
            for (int half_row = 0; half_row < 2; ++half_row) {
                const int row = m0 + warp_m * T::kWarpM + mt * 16 + g + 8 * half_row;
                if (row >= p.m) continue;
                const float v0 = acc[mt][h][2 * half_row];
                const float v1 = acc[mt][h][2 * half_row + 1];
                if (p.splits == 1) {
                    *reinterpret_cast<half2*>(out + static_cast<size_t>(row) * p.n + col) =
                        __floats2half2_rn(v0 + bv.x, v1 + bv.y);
                } else {
                    float* dst = p.partials + (static_cast<size_t>(blockIdx.z) * p.m + row) * p.n + col;
                    *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
                }
            }
        }
    }
    if (p.splits == 1) return;

    // Split-K: the last CTA of this tile sums the slices' partials, 4 columns per thread and step
    // (a row of the tile is 32 float4; N % 16 == 0, so a float4 never straddles the edge).
    __shared__ bool last_cta;
    if (!last_cta_of_tile(p.counters + blockIdx.y * gridDim.x + blockIdx.x, p.splits, &last_cta)) return;
    const size_t slice = static_cast<size_t>(p.m) * p.n;
    for (int q = tid; q < BM * (kMmaBN / 4); q += kThreads) {
        const int row = m0 + q / (kMmaBN / 4);
        const int col = n0 + (q % (kMmaBN / 4)) * 4;
        if (row >= p.m || col >= p.n) continue;
        const float* src = p.partials + static_cast<size_t>(row) * p.n + col;
        float4 s = __ldcg(reinterpret_cast<const float4*>(src));
        for (int z = 1; z < p.splits; ++z) {
            const float4 v = __ldcg(reinterpret_cast<const float4*>(src + z * slice));
            s.x += v.x;
            s.y += v.y;
            s.z += v.z;
            s.w += v.w;
        }
        if (bias != nullptr) {
            const float2 b0 = __half22float2(*reinterpret_cast<const half2*>(bias + col));
            const float2 b1 = __half22float2(*reinterpret_cast<const half2*>(bias + col + 2));
            s.x += b0.x;
            s.y += b0.y;
            s.z += b1.x;
            s.w += b1.y;
        }
        half2* o = reinterpret_cast<half2*>(out + static_cast<size_t>(row) * p.n + col);
        o[0] = __floats2half2_rn(s.x, s.y);
        o[1] = __floats2half2_rn(s.z, s.w);
    }
}

template <int BM, int WARPS_M, int STAGES>
cudaError_t launch_tile(const Problem& p, cudaStream_t stream) {
    using T = Tile<BM, WARPS_M, STAGES>;
    auto kernel = w4a16_mma_kernel<BM, WARPS_M, STAGES>;
    // Dynamic shared memory above 48 KB must be opted into once per device and kernel.
    static std::atomic<unsigned long long> configured{0};
    if (T::kSmem > 48 * 1024) {
        int dev = 0;
        cudaError_t err = cudaGetDevice(&dev);
        if (err != cudaSuccess) return err;
        const unsigned long long bit = 1ull << (dev & 63);
        if (!(configured.load() & bit)) {
            err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmem);
            if (err != cudaSuccess) return err;
            configured.fetch_or(bit);
        }
    }
    const dim3 grid((p.n + kMmaBN - 1) / kMmaBN, (p.m + BM - 1) / BM, p.splits);
    if (p.splits > 1) {
        const cudaError_t err = cudaMemsetAsync(p.counters, 0, sizeof(int) * grid.x * grid.y, stream);
        if (err != cudaSuccess) return err;
    }
    kernel<<<grid, kThreads, T::kSmem, stream>>>(p);
    return cudaGetLastError();
}

}  // namespace

cudaError_t launch_mma(MmaTile tile, const Problem& p, cudaStream_t stream) {
    switch (tile) {
        case MmaTile::kM16: return launch_tile<16, 1, 8>(p, stream);    // 8 warps side by side, 16 x 16 each
        case MmaTile::kM64: return launch_tile<64, 2, 4>(p, stream);    // 2 x 4 warps, 32 x 32 each
        case MmaTile::kM128: return launch_tile<128, 2, 4>(p, stream);  // 2 x 4 warps, 64 x 32 each
    }
    return cudaErrorInvalidValue;
}

}  // namespace qvggt
