// TensorRT IPluginV3 wrapper of the W4A16 GEMM (kernels/w4a16_gemm.h). The plugin only checks
// shapes/types and maps them onto the C ABI; the packed weight layout it passes through is the
// LAYOUT block of kernels/w4a16_gemm.cu, and the node contract (op type, fields, input order) is
// kernels/trt_plugin/qvggt_plugin_contract.h = qvggt_deploy/ops/plugin_contract.py.
//
// Written against TensorRT 10.3 (JetPack 6) headers; IPluginV3 is unchanged through 10.x.
#ifndef QVGGT_W4A16_PLUGIN_H
#define QVGGT_W4A16_PLUGIN_H

#include <cstdint>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "../w4a16_gemm.h"

namespace qvggt {
namespace trt {

// The plugin's whole state: its four fields (serialised as such; see getFieldsToSerialize).
struct W4A16Params {
    int32_t group_size{0};
    int32_t in_features{0};   // K
    int32_t out_features{0};  // N
    int32_t has_bias{0};
};

// Logs through the ILogger that TensorRT handed to setLoggerFinder(), else to stderr.
void log_message(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;

class W4A16GemmPlugin final : public nvinfer1::IPluginV3,
                              public nvinfer1::IPluginV3OneCore,
                              public nvinfer1::IPluginV3OneBuild,
                              public nvinfer1::IPluginV3OneRuntime {
public:
    W4A16GemmPlugin(std::string name, W4A16Params const& params);
    W4A16GemmPlugin(W4A16GemmPlugin const& other);
    W4A16GemmPlugin& operator=(W4A16GemmPlugin const&) = delete;
    ~W4A16GemmPlugin() override;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                               nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                            nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs,
                            int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    W4A16Params const& params() const noexcept { return mParams; }

private:
    int32_t numInputs() const noexcept { return mParams.has_bias ? 4 : 3; }
    bool checkStaticDims(nvinfer1::Dims const* dims, int32_t nbInputs) const noexcept;
    void error(std::string const& what) const noexcept;
    void refreshFields() noexcept;
    // Creates the context's cuBLAS handle when the dispatch table sends m rows to cuBLAS on this
    // GPU, so that enqueue never allocates (it may be captured into a CUDA graph).
    void prepareForRows(int64_t m) noexcept;

    std::string mName;          // layer name given to createPlugin, for messages
    W4A16Params mParams;
    std::string mDescription;   // timing-cache id / metadata: the fields as text
    // Runtime instances only (attachToContext): this instance's cuBLAS handle, on its device.
    qvggt_w4a16_context mContext{nullptr};
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class W4A16GemmPluginCreator final : public nvinfer1::IPluginCreatorV3One {
public:
    W4A16GemmPluginCreator();
    ~W4A16GemmPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace trt
}  // namespace qvggt

#endif  // QVGGT_W4A16_PLUGIN_H
