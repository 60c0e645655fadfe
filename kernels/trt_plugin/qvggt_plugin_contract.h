// The W4A16 GEMM node contract shared by the ONNX exporter's graph rewrite, this TensorRT
// plugin and the engine builder. Mirror of qvggt_deploy/ops/plugin_contract.py, which documents
// every item; tests/kernels/test_plugin_contract.py checks that both say the same.
//
// Node:    op_type kOpType (= the TensorRT plugin name), domain kOnnxDomain, attributes
//          plugin_version = kPluginVersion and plugin_namespace = kPluginNamespace (read by the
//          ONNX parser to find the creator) plus the four int fields below.
// Inputs:  0 x       fp16 [..., K]        activations, any number of leading dims (M = their product)
//          1 qweight int32 [K/64, 8*N]    W4A16 device layout (kernels/w4a16_gemm.cu, LAYOUT block)
//          2 scales  fp16 [K/group, N]
//          3 bias    fp16 [N]             present iff has_bias == 1
// Output:  0 y       fp16 [..., N]
#ifndef QVGGT_PLUGIN_CONTRACT_H
#define QVGGT_PLUGIN_CONTRACT_H

#include <cstdint>

namespace qvggt {
namespace contract {

constexpr char kOpType[] = "QvggtW4A16Gemm";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "";
constexpr char kOnnxDomain[] = "trt.plugins";

constexpr char kAttrGroupSize[] = "group_size";
constexpr char kAttrInFeatures[] = "in_features";
constexpr char kAttrOutFeatures[] = "out_features";
constexpr char kAttrHasBias[] = "has_bias";
constexpr char kOnnxAttrPluginVersion[] = "plugin_version";
constexpr char kOnnxAttrPluginNamespace[] = "plugin_namespace";

constexpr int32_t kInputX = 0;
constexpr int32_t kInputQweight = 1;
constexpr int32_t kInputScales = 2;
constexpr int32_t kInputBias = 3;
constexpr int32_t kNumOutputs = 1;

constexpr int32_t kKMultiple = 64;
constexpr int32_t kNMultiple = 16;
constexpr int32_t kGroupMultiple = 32;

}  // namespace contract
}  // namespace qvggt

#endif  // QVGGT_PLUGIN_CONTRACT_H
