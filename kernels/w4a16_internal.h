// Host-side glue shared by the translation units of libqvggt_w4a16 (not part of the ABI).
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

namespace qvggt {

// One validated problem (see the LAYOUT block in w4a16_gemm.cu for every rule).
struct Problem {
    const void* a;        // fp16 [m, k], row-major, 16-byte aligned
    const void* qweight;  // int32 words, device layout
    const void* scales;   // fp16 [k / group, n]
    const void* bias;     // fp16 [n] or nullptr
    void* out;            // fp16 [m, n]
    int m, n, k, group;
    float* partials;      // fp32 [splits, m, n] when splits > 1, else unused
    int splits;           // K slices (gridDim.z), >= 1
};

// Tensor-core kernel variants; all use a 128-column CTA tile and BK = 64 (one layout chunk).
enum class MmaTile { kM16, kM64, kM128 };

constexpr int kMmaBN = 128;

inline int mma_block_m(MmaTile tile) {
    return tile == MmaTile::kM16 ? 16 : (tile == MmaTile::kM64 ? 64 : 128);
}

// Each returns cudaGetLastError() after its launch(es).
cudaError_t launch_mma(MmaTile tile, const Problem& p, cudaStream_t stream);
cudaError_t launch_gemv(const Problem& p, cudaStream_t stream);
cudaError_t launch_splitk_reduce(const Problem& p, cudaStream_t stream);
cudaError_t launch_dequantize(const void* qweight, const void* scales, void* w_out, int n, int k, int group,
                              cudaStream_t stream);

}  // namespace qvggt
