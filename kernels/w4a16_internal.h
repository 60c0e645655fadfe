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
    float* partials;      // fp32 [splits][m][n] when splits > 1, else unused
    int splits;           // K slices (the grid's split dimension), >= 1
    int* counters;        // when splits > 1: one arrival counter per output tile, zeroed before the launch
};

// Split-K scratch in the workspace: fp32 partials [splits][m][n], then int32 counters, one per output
// tile of any kernel (GEMV: n/16 tiles; tensor cores: ceil(m/BM) x ceil(n/128) with BM >= 16).
inline size_t splitk_counter_count(int m, int n) {
    const size_t gemv = static_cast<size_t>(n) / 16;
    const size_t mma = static_cast<size_t>((m + 15) / 16) * static_cast<size_t>((n + 127) / 128);
    return gemv > mma ? gemv : mma;
}

// Tensor-core kernel variants; all use a 128-column CTA tile and BK = 64 (one layout chunk).
enum class MmaTile { kM16, kM64, kM128 };

constexpr int kMmaBN = 128;

inline int mma_block_m(MmaTile tile) {
    return tile == MmaTile::kM16 ? 16 : (tile == MmaTile::kM64 ? 64 : 128);
}

// Each returns cudaGetLastError() after its launch(es). With p.splits > 1 each first zeroes
// p.counters (cudaMemsetAsync); the last CTA of a tile to arrive sums the partials of every
// slice in slice order (deterministic) and writes the output: no separate reduction launch.
cudaError_t launch_mma(MmaTile tile, const Problem& p, cudaStream_t stream);
cudaError_t launch_gemv(const Problem& p, cudaStream_t stream);
cudaError_t launch_dequantize(const void* qweight, const void* scales, void* w_out, int n, int k, int group,
                              cudaStream_t stream);
// out[m][n] = bias[n] for every row (the C that cuBLAS adds to with beta = 1).
cudaError_t launch_fill_bias(const void* bias, void* out, int m, int n, cudaStream_t stream);

// ------------------------------------------------------------- dequantise + cuBLAS (w4a16_cublas.cu)

// What a qvggt_w4a16_context points to.
struct Context {
    int device;    // the CUDA device it was created on
    void* cublas;  // cublasHandle_t, created on first need
};

// cuBLAS's own scratch inside our workspace: cuBLAS recommends 32 MiB on Hopper (4 MiB before);
// one size for every device keeps qvggt_w4a16_workspace_size device-independent.
constexpr size_t kCublasWorkspaceBytes = 32u << 20;
constexpr size_t kCublasWorkspaceAlign = 256;  // cublasSetWorkspace's alignment rule

struct DequantCublasResult {
    cudaError_t cuda = cudaSuccess;  // a launch of ours failed
    int cublas_status = 0;           // cublasStatus_t; -1: cuBLAS could not be loaded
};

bool cublas_available();
// This host thread's context for `device` (lives as long as the process).
Context* thread_context(int device);
// Creates ctx->cublas if missing: 0, a cublasStatus_t, or -1 when cuBLAS cannot be loaded.
int reserve_cublas(Context* ctx);
void destroy_cublas(Context* ctx);
// Workspace bytes the route needs: fp16 W, alignment, cuBLAS's scratch.
size_t dequant_cublas_workspace(int n, int k);
// p.out = p.a @ dequant(W)^T (+ bias); the caller checked workspace_bytes >= dequant_cublas_workspace
// minus the cuBLAS scratch (less scratch only narrows cuBLAS's algorithm choice).
DequantCublasResult run_dequant_cublas(Context* ctx, const Problem& p, void* workspace, size_t workspace_bytes,
                                       cudaStream_t stream);

}  // namespace qvggt
