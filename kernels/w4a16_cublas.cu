// The large-M route of libqvggt_w4a16: dequantise the INT4 weights to fp16 into the workspace, then
// one cuBLAS FP16 GEMM with FP32 accumulation. Host code only.
//
// cuBLAS is loaded at run time (dlopen) rather than linked: the fused kernels, which are all a
// small-M caller needs, then run where no cuBLAS is installed, the library builds without cuBLAS
// headers, and inside PyTorch or TensorRT it reuses the libcublas the process already holds. The
// five entry points used here (cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2,
// cublasSetWorkspace_v2, cublasGemmEx) have had the same C signatures and enum values from
// cuBLAS 11 to 13; they are declared below with plain types.
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>
#include <library_types.h>

#include "w4a16_internal.h"

namespace qvggt {
namespace {

// cublas_api.h values (stable since cuBLAS 11).
constexpr int kCublasOpN = 0;
constexpr int kCublasOpT = 1;
constexpr int kCublasCompute32F = 68;   // CUBLAS_COMPUTE_32F: FP32 accumulation of fp16 products
constexpr int kCublasGemmDefault = -1;  // CUBLAS_GEMM_DEFAULT (tensor cores are the default since cuBLAS 11)

using CreateFn = int (*)(void** handle);
using DestroyFn = int (*)(void* handle);
using SetStreamFn = int (*)(void* handle, cudaStream_t stream);
using SetWorkspaceFn = int (*)(void* handle, void* workspace, size_t bytes);
using GemmExFn = int (*)(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                         const void* A, cudaDataType Atype, int lda, const void* B, cudaDataType Btype, int ldb,
                         const void* beta, void* C, cudaDataType Ctype, int ldc, int compute, int algo);

struct CublasApi {
    CreateFn create = nullptr;
    DestroyFn destroy = nullptr;
    SetStreamFn set_stream = nullptr;
    SetWorkspaceFn set_workspace = nullptr;  // absent before cuBLAS 11.x: cuBLAS then uses its own
    GemmExFn gemm_ex = nullptr;
};

const CublasApi* load_cublas() {
    static CublasApi api;
    static bool ok = false;
    static std::once_flag once;
    std::call_once(once, [] {
        std::vector<const char*> names;
        if (const char* env = std::getenv("QVGGT_CUBLAS_LIB")) names.push_back(env);
        // A libcublas already in the process (PyTorch's, TensorRT's) first, then the one of the
        // CUDA major this library was built with, then the others.
        names.insert(names.end(), {CUDART_VERSION >= 13000 ? "libcublas.so.13" : "libcublas.so.12",
                                   CUDART_VERSION >= 13000 ? "libcublas.so.12" : "libcublas.so.13",
                                   "libcublas.so.11", "libcublas.so"});
        void* lib = nullptr;
        for (const char* name : names)
            if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)) != nullptr) break;
        for (size_t i = 0; lib == nullptr && i < names.size(); ++i) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) return;
        api.create = reinterpret_cast<CreateFn>(dlsym(lib, "cublasCreate_v2"));
        api.destroy = reinterpret_cast<DestroyFn>(dlsym(lib, "cublasDestroy_v2"));
        api.set_stream = reinterpret_cast<SetStreamFn>(dlsym(lib, "cublasSetStream_v2"));
        api.set_workspace = reinterpret_cast<SetWorkspaceFn>(dlsym(lib, "cublasSetWorkspace_v2"));
        api.gemm_ex = reinterpret_cast<GemmExFn>(dlsym(lib, "cublasGemmEx"));
        ok = api.create && api.destroy && api.set_stream && api.gemm_ex;
    });
    return ok ? &api : nullptr;
}

// Contexts of host threads that ended, ready for the next thread on the same device. Their cuBLAS
// handles are never destroyed: at process exit the CUDA driver may be gone before them.
std::mutex g_pool_mutex;
std::vector<Context*> g_pool;

struct ThreadContexts {
    std::vector<Context*> owned;
    ~ThreadContexts() {
        std::lock_guard<std::mutex> lock(g_pool_mutex);
        g_pool.insert(g_pool.end(), owned.begin(), owned.end());
    }
};
thread_local ThreadContexts t_contexts;

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

bool cublas_available() { return load_cublas() != nullptr; }

Context* thread_context(int device) {
    for (Context* ctx : t_contexts.owned)
        if (ctx->device == device) return ctx;
    Context* found = nullptr;
    {
        std::lock_guard<std::mutex> lock(g_pool_mutex);
        for (size_t i = 0; i < g_pool.size(); ++i) {
            if (g_pool[i]->device == device) {
                found = g_pool[i];
                g_pool.erase(g_pool.begin() + static_cast<std::ptrdiff_t>(i));
                break;
            }
        }
    }
    if (found == nullptr) found = new Context{device, nullptr};
    t_contexts.owned.push_back(found);
    return found;
}

int reserve_cublas(Context* ctx) {
    if (ctx->cublas != nullptr) return 0;
    const CublasApi* api = load_cublas();
    if (api == nullptr) return -1;
    return api->create(&ctx->cublas);
}

void destroy_cublas(Context* ctx) {
    const CublasApi* api = load_cublas();
    if (ctx->cublas != nullptr && api != nullptr) api->destroy(ctx->cublas);
    ctx->cublas = nullptr;
}

size_t dequant_cublas_workspace(int n, int k) {
    return align_up(static_cast<size_t>(n) * k * 2, kCublasWorkspaceAlign) + kCublasWorkspaceBytes +
           kCublasWorkspaceAlign;
}

DequantCublasResult run_dequant_cublas(Context* ctx, const Problem& p, void* workspace, size_t workspace_bytes,
                                       cudaStream_t stream) {
    DequantCublasResult r;
    const int cublas_status = reserve_cublas(ctx);
    if (cublas_status != 0) {
        r.cublas_status = cublas_status;
        return r;
    }
    const CublasApi* api = load_cublas();
    // Workspace: fp16 W [n][k] (the PyTorch layout), then cuBLAS's scratch on a 256-byte boundary.
    void* w = workspace;
    r.cuda = launch_dequantize(p.qweight, p.scales, w, p.n, p.k, p.group, stream);
    if (r.cuda != cudaSuccess) return r;
    float beta = 0.0f;
    if (p.bias != nullptr) {
        // out = bias broadcast, then C = A B + 1 * C in FP32: one rounding of (sum + bias), as the fused path.
        r.cuda = launch_fill_bias(p.bias, p.out, p.m, p.n, stream);
        if (r.cuda != cudaSuccess) return r;
        beta = 1.0f;
    }
    const float alpha = 1.0f;
    int status = api->set_stream(ctx->cublas, stream);
    if (status == 0 && api->set_workspace != nullptr) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(workspace);
        const uintptr_t scratch = align_up(base + static_cast<size_t>(p.n) * p.k * 2, kCublasWorkspaceAlign);
        const size_t used = scratch - base;
        const size_t left = workspace_bytes > used ? workspace_bytes - used : 0;
        status = api->set_workspace(ctx->cublas, left > 0 ? reinterpret_cast<void*>(scratch) : nullptr, left);
    }
    // Column-major view: out^T [n x m] = W [n x k] (row-major [n][k] read transposed) x a^T [k x m].
    if (status == 0)
        status = api->gemm_ex(ctx->cublas, kCublasOpT, kCublasOpN, p.n, p.m, p.k, &alpha, w, CUDA_R_16F, p.k, p.a,
                              CUDA_R_16F, p.k, &beta, p.out, CUDA_R_16F, p.n, kCublasCompute32F, kCublasGemmDefault);
    r.cublas_status = status;
    return r;
}

}  // namespace qvggt
