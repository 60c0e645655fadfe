/*
 * LAYOUT ====================================================================================
 * The one specification of the W4A16 device format. qvggt_deploy/ops/layout.py packs it,
 * qvggt_deploy/ops/reference.py decodes it, kernels/trt_plugin/ passes it through unchanged,
 * docs/formats.md ("W4A16 kernel layout") summarises it.
 *
 * Notation: W [N, K] is the PyTorch Linear weight (out x in) and out = a @ W^T. q[n][k] in
 * [-8, 7] and s[n][k / group] (fp16) are the canonical symmetric INT4 weights of
 * qvggt_deploy/quant/quantizer.py; u = q + 8 in [0, 15] is the canonical nibble value.
 *
 * qweight: int32 words [K/64][N/16][32][4]  (a contiguous int32 tensor [K/64, 8*N])
 *   kc = k / 64    one 64-deep K chunk (= one pipeline stage of the tensor-core kernel)
 *   nb = n / 16    one block of 16 output columns
 *   lane = 4g + t  the mma.sync lane (g = 0..7, t = 0..3) that consumes the word
 *   j              the k16 step inside the chunk (kb = 4*kc + j)
 *   Word [kc][nb][lane][j] holds 8 nibbles, nibble i at bits 4i..4i+3, each the value u at
 *        nibble i:   0     1      2      3      4      5      6      7
 *        n - 16nb:   g     g      g+8    g+8    g      g      g+8    g+8
 *        k - 16kb:   2t    2t+8   2t     2t+8   2t+1   2t+9   2t+1   2t+9
 *   Why: nibbles (i, i+4) are k and k+1 of one column, which the lop3 trick (dequant_word in
 *   w4a16_common.cuh) turns into one half2 = one mma B fragment register; the four registers
 *   of a word are b0,b1 of the n8 tile at column g and b0,b1 of the tile at g+8. A lane's 4
 *   words of one (kc, nb) are one 16-byte load, a warp's are 512 contiguous bytes, and the
 *   8 n16 blocks of a 128-column CTA tile are 4 KB contiguous (one cp.async per thread).
 * scales: fp16 [K/group][N] row-major: the canonical [N, K/group] transposed, so the 128
 *   columns of one CTA tile in one group are 256 contiguous bytes.
 * a: fp16 [M][K], out: fp16 [M][N], both row-major and contiguous. bias: fp16 [N] or NULL.
 * workspace: fp32 [splits][M][N] partial sums, only when the tensor-core path splits K.
 *
 * Arithmetic (every path, and the CPU reference):
 *   w[n][k]   = fp16_rn(q * s)                       (dequantised in registers)
 *   out[m][n] = fp16_rn( sum_k a[m][k]*w[n][k] + bias[n] )
 *   with exact fp16 x fp16 products and FP32 sums; the summation order differs between
 *   kernels and with the number of K splits, nothing else does.
 *
 * Divisibility: M >= 0 (M == 0 does nothing), N % 16 == 0, K % 64 == 0, group % 32 == 0 and
 *   K % group == 0 (group 32, 64, 128, or per-channel group = K).
 * Alignment: a, qweight, scales, workspace: 16 bytes (cp.async and 16-byte loads; with the
 *   divisibility rules every row then stays aligned); out, bias: 4 bytes (half2 accesses).
 * Status codes (w4a16_gemm.h): shapes are checked first (ERR_SHAPE, ERR_GROUP), then NULL
 *   pointers (ERR_NULL), alignment (ERR_ALIGN), algo/split arguments (ERR_ARG,
 *   ERR_WORKSPACE), then CUDA calls (ERR_LAUNCH; the cudaError_t is kept per host thread).
 * ===========================================================================================
 *
 * Workspace (caller-provided, 16-byte aligned; qvggt_w4a16_workspace_size says how much):
 *   fused route, only when K is split: fp32 [splits][M][N] partial sums, then int32 arrival
 *   counters, max(N/16, ceil(M/16) * ceil(N/128)) of them (one per output tile);
 *   dequant + cuBLAS route: fp16 W [N][K] (the PyTorch layout), then cuBLAS's scratch from the
 *   next 256-byte boundary on.
 * ===========================================================================================
 *
 * Dispatch (AUTO): from the dispatch table's threshold for (architecture, K, N) on
 * (w4a16_dispatch_table.h, generated from qvggt_deploy/ops/w4a16_dispatch.json), and when the
 * workspace holds W and cuBLAS loads: dequantise + cuBLAS (w4a16_cublas.cu). Otherwise the fused
 * kernels: M <= 4 -> GEMV (w4a16_gemv.cu); M <= 16 -> MMA16; M <= 64, or too few 128x128 tiles to
 * fill the GPU -> MMA64; else MMA128 (w4a16_mma.cu). The GEMV, and for M <= 256 the tensor-core
 * path, split K across CTAs when the tile grid alone would leave SMs idle; the fp32 partials go
 * through the workspace and the last CTA of each output tile to finish sums them in slice order
 * (an arrival counter per tile, zeroed by one cudaMemsetAsync before the launch).
 */
#include "w4a16_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <new>

#include <cuda_runtime.h>

#include "w4a16_dispatch_table.h"
#include "w4a16_internal.h"

namespace {

using qvggt::MmaTile;
using qvggt::Problem;

// GEMV serves M up to 8 when forced; AUTO uses it up to 4. Both numbers are first guesses
// from the FMA count (8 rows x 8 nibbles per word on CUDA cores vs. one m16 mma per 2 words)
// and are to be set from benchmarks/gpu_check.py's side-by-side figures.
constexpr int kGemvMaxM = 8;
constexpr int kGemvAutoMaxM = 4;
// Split-K only pays when the output is small enough for the partials' round trip to be cheap
// and the tile grid is too small to fill the GPU; past 256 rows the tiles alone suffice.
constexpr int kSplitKMaxM = 256;
constexpr int kMaxSplits = 8;
// A K slice shorter than 4 chunks cannot fill the 4-stage cp.async pipeline.
constexpr int kMinChunksPerSplit = 4;
// M <= 16 (MMA16, GEMV) streams the weights: more slices put more CTAs, hence more bytes, in
// flight, and with the reduction fused into the kernel a slice costs only its partials.
constexpr int kMaxSplitsSmallM = 16;
constexpr int kMinChunksSmallM = 2;
// GEMV: slices of at least 4 chunks (half the CTA's 8 warps get one) and at least 2 CTAs per SM.
constexpr int kGemvMinChunks = 4;
constexpr int kGemvCtasPerSm = 2;
// The workspace bound must not depend on the device, so split decisions assume at most this
// many SMs (H100 SXM has 132, Orin AGX 16); a larger GPU is treated as this one.
constexpr int kSmBound = 192;

thread_local int g_last_cuda_error = 0;
thread_local int g_last_cublas_status = 0;

int ceil_div(int a, int b) { return (a + b - 1) / b; }

bool aligned(const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

// Largest split count <= s that leaves no K slice empty (slices are ceil(kc/s) chunks long).
int normalize_splits(int s, int kc_total) {
    s = std::max(1, std::min(s, kc_total));
    const int per = ceil_div(kc_total, s);
    return ceil_div(kc_total, per);
}

MmaTile auto_tile(int m, int n, int sms) {
    if (m <= 16) return MmaTile::kM16;
    const int tiles128 = ceil_div(m, 128) * ceil_div(n, qvggt::kMmaBN);
    if (m <= 64 || tiles128 < sms) return MmaTile::kM64;
    return MmaTile::kM128;
}

int auto_splits(MmaTile tile, int m, int n, int k, int sms) {
    if (m > kSplitKMaxM) return 1;
    const int tiles = ceil_div(m, qvggt::mma_block_m(tile)) * ceil_div(n, qvggt::kMmaBN);
    if (tiles >= sms) return 1;
    const int kc_total = k / 64;
    const bool small = tile == MmaTile::kM16;
    int s = std::min(ceil_div(sms, tiles), small ? kMaxSplitsSmallM : kMaxSplits);
    s = std::min(s, std::max(1, kc_total / (small ? kMinChunksSmallM : kMinChunksPerSplit)));
    return normalize_splits(s, kc_total);
}

// GEMV: N/16 CTAs alone leave most SMs idle on VGGT's 1024-wide layers (64 CTAs on 132 SMs).
int gemv_splits(int n, int k, int sms) {
    const int kc_total = k / 64;
    int s = std::min(ceil_div(kGemvCtasPerSm * sms, n / 16), kMaxSplitsSmallM);
    s = std::min(s, std::max(1, kc_total / kGemvMinChunks));
    return normalize_splits(s, kc_total);
}

// Split-K scratch (w4a16_internal.h): partials, then the tile counters.
size_t partial_bytes(int splits, int m, int n) {
    if (splits <= 1) return 0;
    return static_cast<size_t>(splits) * m * n * sizeof(float) + qvggt::splitk_counter_count(m, n) * sizeof(int);
}

// Most slices, up to `wanted`, whose scratch fits the caller's workspace (1 = no split).
int fit_splits(int wanted, int m, int n, int kc_total, size_t workspace_bytes) {
    if (partial_bytes(wanted, m, n) <= workspace_bytes) return wanted;
    const size_t counters = qvggt::splitk_counter_count(m, n) * sizeof(int);
    if (workspace_bytes <= counters) return 1;
    const size_t fit = (workspace_bytes - counters) / (static_cast<size_t>(m) * n * sizeof(float));
    const int s = fit >= 2 ? normalize_splits(static_cast<int>(std::min<size_t>(fit, wanted)), kc_total) : 1;
    return partial_bytes(s, m, n) <= workspace_bytes ? s : 1;
}

int fail_cuda(cudaError_t err) {
    g_last_cuda_error = static_cast<int>(err);
    return QVGGT_W4A16_ERR_LAUNCH;
}

int fail_cublas(int status) {
    g_last_cublas_status = status;
    return QVGGT_W4A16_ERR_CUBLAS;
}

// ---- dispatch table (rules: the "about" field of qvggt_deploy/ops/w4a16_dispatch.json, whose
// reader qvggt_deploy/ops/dispatch.py implements the same two lookups)

// The table's architecture for compute capability sm: itself; else the nearest of the same major
// (ties: the older); else the newest older one; else the oldest.
const qvggt::dispatch::ArchRows& table_arch(int sm) {
    using qvggt::dispatch::kArchs;
    using qvggt::dispatch::kNumArchs;
    int best = -1;
    for (int i = 0; i < kNumArchs; ++i) {
        if (kArchs[i].sm / 10 != sm / 10) continue;
        const int d = std::abs(kArchs[i].sm - sm), bd = best < 0 ? 0 : std::abs(kArchs[best].sm - sm);
        if (best < 0 || d < bd || (d == bd && kArchs[i].sm < kArchs[best].sm)) best = i;
    }
    if (best >= 0) return kArchs[best];
    for (int i = 0; i < kNumArchs; ++i)
        if (kArchs[i].sm < sm && (best < 0 || kArchs[i].sm > kArchs[best].sm)) best = i;
    if (best >= 0) return kArchs[best];
    best = 0;
    for (int i = 1; i < kNumArchs; ++i)
        if (kArchs[i].sm < kArchs[best].sm) best = i;
    return kArchs[best];
}

// The row of the exact (k, n), else the nearest by |log2 k/k'| + |log2 n/n'| (ties: the first).
int table_min_m(int sm, int n, int k) {
    const qvggt::dispatch::ArchRows& arch = table_arch(sm);
    int best = 0;
    double best_d = 0.0;
    for (int i = 0; i < arch.count; ++i) {
        const double d = std::fabs(std::log2(static_cast<double>(k) / arch.rows[i].k)) +
                         std::fabs(std::log2(static_cast<double>(n) / arch.rows[i].n));
        if (i == 0 || d < best_d) {
            best = i;
            best_d = d;
        }
    }
    return arch.rows[best].cublas_min_m;
}

// The smallest threshold any architecture of the table has for (n, k); 0 if none uses cuBLAS.
int smallest_min_m(int n, int k) {
    int lowest = 0;
    for (int i = 0; i < qvggt::dispatch::kNumArchs; ++i) {
        const int t = table_min_m(qvggt::dispatch::kArchs[i].sm, n, k);
        if (t > 0 && (lowest == 0 || t < lowest)) lowest = t;
    }
    return lowest;
}

size_t gemv_workspace(int m, int n, int k, int max_m) {
    size_t need = 0;
    for (int mm = 1; mm <= std::min(m, max_m); ++mm) need = std::max(need, partial_bytes(gemv_splits(n, k, kSmBound), mm, n));
    return need;
}

size_t fused_workspace(int m, int n, int k) {
    // Max over every m' <= m and every kernel AUTO could pick for it (split counts only grow
    // with the SM count, and dispatch caps that at kSmBound).
    size_t need = gemv_workspace(m, n, k, kGemvAutoMaxM);
    for (int mm = 1; mm <= std::min(m, kSplitKMaxM); ++mm) {
        for (MmaTile tile : {MmaTile::kM16, MmaTile::kM64, MmaTile::kM128}) {
            if (tile == MmaTile::kM16 && mm > 16) continue;
            need = std::max(need, partial_bytes(auto_splits(tile, mm, n, k, kSmBound), mm, n));
        }
    }
    return need;
}

}  // namespace

extern "C" {

int qvggt_w4a16_abi_version(void) { return QVGGT_W4A16_ABI_VERSION; }

const char* qvggt_w4a16_status_string(int status) {
    switch (status) {
        case QVGGT_W4A16_OK: return "ok";
        case QVGGT_W4A16_ERR_SHAPE: return "bad shape: need m >= 0, n > 0 with n % 16 == 0, k > 0 with k % 64 == 0";
        case QVGGT_W4A16_ERR_GROUP: return "bad group size: need group % 32 == 0 and k % group == 0";
        case QVGGT_W4A16_ERR_ALIGN: return "misaligned pointer: a, qweight, scales, workspace need 16 bytes; out, bias 4";
        case QVGGT_W4A16_ERR_NULL: return "a required pointer (a, qweight, scales, out) is NULL";
        case QVGGT_W4A16_ERR_ARG:
            return "bad algo, split_k or context (GEMV needs m <= 8, dequant+cuBLAS no split; a context serves the "
                   "device it was created on)";
        case QVGGT_W4A16_ERR_WORKSPACE: return "workspace too small for the forced split_k or dequant+cuBLAS";
        case QVGGT_W4A16_ERR_LAUNCH: return "CUDA error (see qvggt_w4a16_last_cuda_error)";
        case QVGGT_W4A16_ERR_CUBLAS:
            return "cuBLAS not loadable (libcublas.so.13/12/11 or $QVGGT_CUBLAS_LIB) or a cuBLAS call failed "
                   "(see qvggt_w4a16_last_cublas_status)";
        default: return "unknown status";
    }
}

int qvggt_w4a16_last_cuda_error(void) { return g_last_cuda_error; }

int qvggt_w4a16_last_cublas_status(void) { return g_last_cublas_status; }

int qvggt_w4a16_dispatch_min_m(int sm, int n, int k, int* min_m) {
    if (min_m == nullptr) return QVGGT_W4A16_ERR_NULL;
    if (n <= 0 || k <= 0 || sm <= 0) return QVGGT_W4A16_ERR_SHAPE;
    *min_m = table_min_m(sm, n, k);
    return QVGGT_W4A16_OK;
}

int qvggt_w4a16_context_create(qvggt_w4a16_context* ctx) {
    if (ctx == nullptr) return QVGGT_W4A16_ERR_NULL;
    int dev = 0;
    const cudaError_t err = cudaGetDevice(&dev);
    if (err != cudaSuccess) return fail_cuda(err);
    *ctx = reinterpret_cast<qvggt_w4a16_context>(new (std::nothrow) qvggt::Context{dev, nullptr});
    return *ctx != nullptr ? QVGGT_W4A16_OK : fail_cuda(cudaErrorMemoryAllocation);
}

int qvggt_w4a16_context_reserve_cublas(qvggt_w4a16_context ctx) {
    if (ctx == nullptr) return QVGGT_W4A16_ERR_NULL;
    const int status = qvggt::reserve_cublas(reinterpret_cast<qvggt::Context*>(ctx));
    return status == 0 ? QVGGT_W4A16_OK : fail_cublas(status);
}

int qvggt_w4a16_context_destroy(qvggt_w4a16_context ctx) {
    if (ctx == nullptr) return QVGGT_W4A16_OK;
    auto* c = reinterpret_cast<qvggt::Context*>(ctx);
    qvggt::destroy_cublas(c);
    delete c;
    return QVGGT_W4A16_OK;
}

int qvggt_w4a16_check_shape(int m, int n, int k, int group) {
    if (m < 0 || n <= 0 || k <= 0 || n % 16 != 0 || k % 64 != 0) return QVGGT_W4A16_ERR_SHAPE;
    if (group <= 0 || group % 32 != 0 || k % group != 0) return QVGGT_W4A16_ERR_GROUP;
    return QVGGT_W4A16_OK;
}

int qvggt_w4a16_workspace_size_ex(int m, int n, int k, int group, int algo, size_t* bytes) {
    const int status = qvggt_w4a16_check_shape(m, n, k, group);
    if (status != QVGGT_W4A16_OK) return status;
    if (bytes == nullptr) return QVGGT_W4A16_ERR_NULL;
    if (algo < QVGGT_W4A16_ALGO_AUTO || algo > QVGGT_W4A16_ALGO_FUSED) return QVGGT_W4A16_ERR_ARG;
    switch (algo) {
        case QVGGT_W4A16_ALGO_GEMV: *bytes = gemv_workspace(m, n, k, kGemvMaxM); break;
        case QVGGT_W4A16_ALGO_DEQUANT_CUBLAS: *bytes = qvggt::dequant_cublas_workspace(n, k); break;
        case QVGGT_W4A16_ALGO_AUTO: {
            const int t = smallest_min_m(n, k);
            const size_t cublas = (t > 0 && m >= t) ? qvggt::dequant_cublas_workspace(n, k) : 0;
            *bytes = std::max(fused_workspace(m, n, k), cublas);
            break;
        }
        default: *bytes = fused_workspace(m, n, k);
    }
    return QVGGT_W4A16_OK;
}

int qvggt_w4a16_workspace_size(int m, int n, int k, int group, size_t* bytes) {
    return qvggt_w4a16_workspace_size_ex(m, n, k, group, QVGGT_W4A16_ALGO_AUTO, bytes);
}

int qvggt_w4a16_gemm_ctx(qvggt_w4a16_context ctx, const void* a, const void* qweight, const void* scales,
                         const void* bias, void* out, int m, int n, int k, int group, void* workspace,
                         size_t workspace_bytes, cudaStream_t stream, int algo, int split_k) {
    int status = qvggt_w4a16_check_shape(m, n, k, group);
    if (status != QVGGT_W4A16_OK) return status;
    if (a == nullptr || qweight == nullptr || scales == nullptr || out == nullptr) return QVGGT_W4A16_ERR_NULL;
    if (workspace == nullptr) workspace_bytes = 0;
    if (!aligned(a, 16) || !aligned(qweight, 16) || !aligned(scales, 16) || !aligned(workspace, 16) ||
        !aligned(out, 4) || !aligned(bias, 4))
        return QVGGT_W4A16_ERR_ALIGN;
    if (algo < QVGGT_W4A16_ALGO_AUTO || algo > QVGGT_W4A16_ALGO_FUSED || split_k < 0) return QVGGT_W4A16_ERR_ARG;
    if (algo == QVGGT_W4A16_ALGO_GEMV && m > kGemvMaxM) return QVGGT_W4A16_ERR_ARG;
    if (algo == QVGGT_W4A16_ALGO_DEQUANT_CUBLAS && split_k > 1) return QVGGT_W4A16_ERR_ARG;
    const size_t weight_bytes = static_cast<size_t>(n) * k * 2;
    if (algo == QVGGT_W4A16_ALGO_DEQUANT_CUBLAS && workspace_bytes < weight_bytes) return QVGGT_W4A16_ERR_WORKSPACE;
    if (split_k > 1 && algo != QVGGT_W4A16_ALGO_DEQUANT_CUBLAS &&
        partial_bytes(normalize_splits(split_k, k / 64), m, n) > workspace_bytes)
        return QVGGT_W4A16_ERR_WORKSPACE;  // a forced split must fit (checked before any CUDA call)
    if (m == 0) return QVGGT_W4A16_OK;

    Problem p{a, qweight, scales, bias, out, m, n, k, group, nullptr, 1, nullptr};
    const bool automatic = algo == QVGGT_W4A16_ALGO_AUTO || algo == QVGGT_W4A16_ALGO_FUSED;
    bool use_cublas = algo == QVGGT_W4A16_ALGO_DEQUANT_CUBLAS;
    int dev = 0;
    const int lowest = algo == QVGGT_W4A16_ALGO_AUTO ? smallest_min_m(n, k) : 0;
    if (lowest > 0 && m >= lowest && split_k <= 1 && workspace_bytes >= weight_bytes) {
        int major = 0, minor = 0;
        cudaError_t err = cudaGetDevice(&dev);
        if (err == cudaSuccess) err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        if (err != cudaSuccess) return fail_cuda(err);
        const int t = table_min_m(10 * major + minor, n, k);
        use_cublas = t > 0 && m >= t && qvggt::cublas_available();
    } else if (use_cublas) {
        const cudaError_t err = cudaGetDevice(&dev);
        if (err != cudaSuccess) return fail_cuda(err);
    }
    if (use_cublas) {
        qvggt::Context* c = ctx != nullptr ? reinterpret_cast<qvggt::Context*>(ctx) : qvggt::thread_context(dev);
        if (c->device != dev) return QVGGT_W4A16_ERR_ARG;
        const qvggt::DequantCublasResult r = qvggt::run_dequant_cublas(c, p, workspace, workspace_bytes, stream);
        if (r.cuda != cudaSuccess) return fail_cuda(r.cuda);
        return r.cublas_status == 0 ? QVGGT_W4A16_OK : fail_cublas(r.cublas_status);
    }

    int sms = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (err != cudaSuccess) return fail_cuda(err);
    sms = std::min(sms, kSmBound);
    const int kc_total = k / 64;

    auto set_splits = [&](int forced, int preferred) {
        // A forced count must fit; AUTO's preference shrinks to what the caller gave.
        p.splits = forced > 0 ? normalize_splits(forced, kc_total) : fit_splits(preferred, m, n, kc_total, workspace_bytes);
        if (partial_bytes(p.splits, m, n) > workspace_bytes) return false;
        if (p.splits > 1) {
            p.partials = static_cast<float*>(workspace);
            p.counters = reinterpret_cast<int*>(static_cast<char*>(workspace) +
                                                static_cast<size_t>(p.splits) * m * n * sizeof(float));
        }
        return true;
    };

    if (algo == QVGGT_W4A16_ALGO_GEMV || (automatic && m <= kGemvAutoMaxM && split_k <= 1)) {
        if (!set_splits(algo == QVGGT_W4A16_ALGO_GEMV ? split_k : 0, gemv_splits(n, k, sms)))
            return QVGGT_W4A16_ERR_WORKSPACE;
        err = qvggt::launch_gemv(p, stream);
        return err == cudaSuccess ? QVGGT_W4A16_OK : fail_cuda(err);
    }

    MmaTile tile = auto_tile(m, n, sms);
    if (algo == QVGGT_W4A16_ALGO_MMA16) tile = MmaTile::kM16;
    if (algo == QVGGT_W4A16_ALGO_MMA64) tile = MmaTile::kM64;
    if (algo == QVGGT_W4A16_ALGO_MMA128) tile = MmaTile::kM128;

    if (!set_splits(split_k, auto_splits(tile, m, n, k, sms))) return QVGGT_W4A16_ERR_WORKSPACE;
    err = qvggt::launch_mma(tile, p, stream);
    return err == cudaSuccess ? QVGGT_W4A16_OK : fail_cuda(err);
}

int qvggt_w4a16_gemm_ex(const void* a, const void* qweight, const void* scales, const void* bias, void* out,
                        int m, int n, int k, int group, void* workspace, size_t workspace_bytes,
                        cudaStream_t stream, int algo, int split_k) {
    return qvggt_w4a16_gemm_ctx(nullptr, a, qweight, scales, bias, out, m, n, k, group, workspace, workspace_bytes,
                                stream, algo, split_k);
}

int qvggt_w4a16_gemm(const void* a, const void* qweight, const void* scales, const void* bias, void* out, int m,
                     int n, int k, int group, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
    return qvggt_w4a16_gemm_ex(a, qweight, scales, bias, out, m, n, k, group, workspace, workspace_bytes, stream,
                               QVGGT_W4A16_ALGO_AUTO, 0);
}

int qvggt_w4a16_dequantize(const void* qweight, const void* scales, void* w_out, int n, int k, int group,
                           cudaStream_t stream) {
    const int status = qvggt_w4a16_check_shape(0, n, k, group);
    if (status != QVGGT_W4A16_OK) return status;
    if (qweight == nullptr || scales == nullptr || w_out == nullptr) return QVGGT_W4A16_ERR_NULL;
    if (!aligned(qweight, 16) || !aligned(scales, 16) || !aligned(w_out, 4)) return QVGGT_W4A16_ERR_ALIGN;
    const cudaError_t err = qvggt::launch_dequantize(qweight, scales, w_out, n, k, group, stream);
    return err == cudaSuccess ? QVGGT_W4A16_OK : fail_cuda(err);
}

}  // extern "C"
