// GENERATED from qvggt_deploy/ops/w4a16_dispatch.json by
//   python -m qvggt_deploy.ops.dispatch --header kernels/w4a16_dispatch_table.h
// Do not edit: change the JSON (or run benchmarks/tune_dispatch.py) and regenerate.
// Rules (nearest architecture, nearest shape): the JSON's "about"; w4a16_gemm.cu implements them.
#pragma once

namespace qvggt {
namespace dispatch {

struct ShapeRow {
    int k, n;
    int cublas_min_m;  // 0: never
};

struct ArchRows {
    int sm;
    const ShapeRow* rows;
    int count;
};

// sm_87: default, not measured: roofline first guess of `python benchmarks/paper_estimate.py --thresholds`
constexpr ShapeRow k_sm_87[] = {
    {1024, 3072, 2560},
    {1024, 1024, 3136},
    {1024, 4096, 2432},
    {4096, 1024, 2432},
    {2048, 6144, 2304},
    {2048, 2048, 2432},
    {2048, 8192, 2304},
    {8192, 2048, 2304},
    {2048, 1024, 2688},
};
// sm_90: default, not measured: roofline first guess of `python benchmarks/paper_estimate.py --thresholds`
constexpr ShapeRow k_sm_90[] = {
    {1024, 3072, 1344},
    {1024, 1024, 2688},
    {1024, 4096, 1152},
    {4096, 1024, 1152},
    {2048, 6144, 832},
    {2048, 2048, 1152},
    {2048, 8192, 768},
    {8192, 2048, 768},
    {2048, 1024, 1664},
};

constexpr ArchRows kArchs[] = {
    {87, k_sm_87, 9},
    {90, k_sm_90, 9},
};
constexpr int kNumArchs = 2;

}  // namespace dispatch
}  // namespace qvggt
