/*
 * qvggt W4A16 GEMM: plain C ABI (no framework headers).
 *
 *   out[M, N] = a[M, K] @ dequant(qweight, scales)[N, K]^T (+ bias[N])
 *
 * FP16 activations and output, INT4 weights with FP16 group scales, FP32 accumulation.
 * The packed device layout, the alignment and divisibility rules and the meaning of every
 * status code are specified ONCE, in the LAYOUT block at the top of w4a16_gemm.cu; the Python
 * packer (qvggt_deploy/ops/layout.py), the CPU reference (qvggt_deploy/ops/reference.py) and
 * the TensorRT plugin (trt_plugin/) cite it.
 *
 * Every function returns a qvggt_w4a16_status; none throws, none synchronises the stream.
 * Pointers are device pointers; `stream` may be 0 (the legacy default stream).
 */
#ifndef QVGGT_W4A16_GEMM_H
#define QVGGT_W4A16_GEMM_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#if defined(_WIN32)
#define QVGGT_W4A16_API __declspec(dllexport)
#else
#define QVGGT_W4A16_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature, the layout or the meaning of a code changes; the ctypes binding
 * refuses a library whose version differs from the one it was written for. */
#define QVGGT_W4A16_ABI_VERSION 2

typedef enum qvggt_w4a16_status {
    QVGGT_W4A16_OK = 0,
    QVGGT_W4A16_ERR_SHAPE = 1,     /* m < 0, n or k <= 0, n % 16 != 0 or k % 64 != 0        */
    QVGGT_W4A16_ERR_GROUP = 2,     /* group % 32 != 0, group <= 0 or k % group != 0          */
    QVGGT_W4A16_ERR_ALIGN = 3,     /* a pointer breaks its alignment rule (LAYOUT block)     */
    QVGGT_W4A16_ERR_NULL = 4,      /* a required pointer is NULL                             */
    QVGGT_W4A16_ERR_ARG = 5,       /* unknown algo, split_k < 0, or GEMV forced with m > 8   */
    QVGGT_W4A16_ERR_WORKSPACE = 6, /* workspace_bytes too small for a forced split_k > 1 or
                                      for a forced DEQUANT_CUBLAS                            */
    QVGGT_W4A16_ERR_LAUNCH = 7,    /* a CUDA call failed: see qvggt_w4a16_last_cuda_error()  */
    QVGGT_W4A16_ERR_CUBLAS = 8     /* dequant + cuBLAS forced, but cuBLAS cannot be loaded or
                                      a cuBLAS call failed: qvggt_w4a16_last_cublas_status()  */
} qvggt_w4a16_status;

/* Kernel choice for qvggt_w4a16_gemm_ex (benchmarks, tests); AUTO is what qvggt_w4a16_gemm uses. */
typedef enum qvggt_w4a16_algo {
    QVGGT_W4A16_ALGO_AUTO = 0,
    QVGGT_W4A16_ALGO_GEMV = 1,     /* CUDA-core dequant + FP32 FMA, m <= 8                   */
    QVGGT_W4A16_ALGO_MMA16 = 2,    /* tensor cores, 16 x 128 CTA tile                        */
    QVGGT_W4A16_ALGO_MMA64 = 3,    /* tensor cores, 64 x 128 CTA tile                        */
    QVGGT_W4A16_ALGO_MMA128 = 4,   /* tensor cores, 128 x 128 CTA tile                       */
    QVGGT_W4A16_ALGO_DEQUANT_CUBLAS = 5, /* dequantise W to fp16 in the workspace + cuBLAS FP16 */
    QVGGT_W4A16_ALGO_FUSED = 6     /* AUTO's choice among the fused kernels (never cuBLAS)   */
} qvggt_w4a16_algo;

/* Per-caller state: the device it was made on and, once needed, a cuBLAS handle (cuBLAS is
 * loaded at run time from libcublas.so.{13,12,11} or $QVGGT_CUBLAS_LIB; nothing else in this
 * library needs it). Calls without a context use one per host thread and device, kept for the
 * process's life. A context must not be used by two host threads at once. */
typedef struct qvggt_w4a16_context_s* qvggt_w4a16_context;

QVGGT_W4A16_API int qvggt_w4a16_abi_version(void);

/* Static, NUL-terminated description of a status code. */
QVGGT_W4A16_API const char* qvggt_w4a16_status_string(int status);

/* The cudaError_t behind the last QVGGT_W4A16_ERR_LAUNCH returned to this host thread (0 if none). */
QVGGT_W4A16_API int qvggt_w4a16_last_cuda_error(void);

/* The cublasStatus_t behind the last QVGGT_W4A16_ERR_CUBLAS on this host thread (-1: cuBLAS could
 * not be loaded; 0 if none). */
QVGGT_W4A16_API int qvggt_w4a16_last_cublas_status(void);

/* The dispatch table compiled in (kernels/w4a16_dispatch_table.h, generated from
 * qvggt_deploy/ops/w4a16_dispatch.json): *min_m = rows from which AUTO dequantises + calls cuBLAS
 * for an [n, k] weight on compute capability sm (e.g. 87, 90), 0 = never. Needs no device. */
QVGGT_W4A16_API int qvggt_w4a16_dispatch_min_m(int sm, int n, int k, int* min_m);

/* A context on the current device (no cuBLAS handle yet). */
QVGGT_W4A16_API int qvggt_w4a16_context_create(qvggt_w4a16_context* ctx);
/* Creates the context's cuBLAS handle now, so that no later gemm call has to (it allocates):
 * QVGGT_W4A16_ERR_CUBLAS if cuBLAS cannot be loaded. Idempotent. */
QVGGT_W4A16_API int qvggt_w4a16_context_reserve_cublas(qvggt_w4a16_context ctx);
/* Destroys the cuBLAS handle (if any) and the context; NULL is accepted. */
QVGGT_W4A16_API int qvggt_w4a16_context_destroy(qvggt_w4a16_context ctx);

/* Shape and group rules only (no pointers, no CUDA calls). */
QVGGT_W4A16_API int qvggt_w4a16_check_shape(int m, int n, int k, int group);

/* Workspace that lets the AUTO path take its preferred route for EVERY m' <= m on any GPU (so a
 * caller that sizes it for the largest m, as TensorRT does, can pass it for any smaller m): the
 * split-K partials of the fused kernels and, from the smallest threshold of the dispatch table
 * for (n, k) on, the fp16 weights plus a cuBLAS workspace. Less workspace, or none, is always
 * accepted by AUTO: it then uses fewer K splits or the fused kernels (slower; the result differs
 * only by FP32 summation order). Needs no device. */
QVGGT_W4A16_API int qvggt_w4a16_workspace_size(int m, int n, int k, int group, size_t* bytes);

/* As qvggt_w4a16_workspace_size for one algo (qvggt_w4a16_algo): FUSED and the MMA algos need
 * only the partials, DEQUANT_CUBLAS the fp16 weights and the cuBLAS workspace, GEMV nothing. */
QVGGT_W4A16_API int qvggt_w4a16_workspace_size_ex(int m, int n, int k, int group, int algo, size_t* bytes);

/* out = a @ W^T (+ bias) with the AUTO kernel choice. bias may be NULL; workspace may be NULL. */
QVGGT_W4A16_API int qvggt_w4a16_gemm(const void* a, const void* qweight, const void* scales,
                                     const void* bias, void* out, int m, int n, int k, int group,
                                     void* workspace, size_t workspace_bytes, cudaStream_t stream);

/* As qvggt_w4a16_gemm with the kernel forced (algo: qvggt_w4a16_algo) and split_k forced when
 * > 0 (GEMV and MMA algos; 0 = choose). DEQUANT_CUBLAS needs the workspace of
 * qvggt_w4a16_workspace_size_ex for it (ERR_WORKSPACE otherwise). */
QVGGT_W4A16_API int qvggt_w4a16_gemm_ex(const void* a, const void* qweight, const void* scales,
                                        const void* bias, void* out, int m, int n, int k, int group,
                                        void* workspace, size_t workspace_bytes, cudaStream_t stream,
                                        int algo, int split_k);

/* As qvggt_w4a16_gemm_ex with a context (NULL: this thread's own). */
QVGGT_W4A16_API int qvggt_w4a16_gemm_ctx(qvggt_w4a16_context ctx, const void* a, const void* qweight,
                                         const void* scales, const void* bias, void* out, int m, int n, int k,
                                         int group, void* workspace, size_t workspace_bytes,
                                         cudaStream_t stream, int algo, int split_k);

/* w_out fp16 [N, K] (PyTorch Linear layout) = fp16(q * s): the exact weights the GEMM multiplies.
 * For tests (bit-exact against the CPU reference) and for a dequantize + cuBLAS comparison. */
QVGGT_W4A16_API int qvggt_w4a16_dequantize(const void* qweight, const void* scales, void* w_out,
                                           int n, int k, int group, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* QVGGT_W4A16_GEMM_H */
