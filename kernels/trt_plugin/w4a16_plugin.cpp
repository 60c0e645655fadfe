// TensorRT IPluginV3 W4A16 GEMM plugin: checks shapes and types, then calls the C ABI of
// kernels/w4a16_gemm.h. See w4a16_plugin.h for the contract and the layout references.
#include "w4a16_plugin.h"

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>

#include <cuda_runtime_api.h>

#include "../w4a16_gemm.h"
#include "qvggt_plugin_contract.h"

namespace qvggt {
namespace trt {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::ILogger;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginV3;
using nvinfer1::PluginCapabilityType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

namespace c = contract;

namespace {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

// The four fields, in one place for the creator's list, parsing and serialisation.
constexpr char const* kFieldNames[4] = {c::kAttrGroupSize, c::kAttrInFeatures, c::kAttrOutFeatures, c::kAttrHasBias};

int32_t* field_slot(W4A16Params& p, int i) {
    switch (i) {
        case 0: return &p.group_size;
        case 1: return &p.in_features;
        case 2: return &p.out_features;
        default: return &p.has_bias;
    }
}

// Why a field set is unusable, or an empty string. Same rules as the kernel's status codes.
std::string invalid_params(W4A16Params const& p) {
    const int status = qvggt_w4a16_check_shape(0, p.out_features, p.in_features, p.group_size);
    if (status != QVGGT_W4A16_OK) {
        std::ostringstream msg;
        msg << qvggt_w4a16_status_string(status) << " (in_features=" << p.in_features
            << ", out_features=" << p.out_features << ", group_size=" << p.group_size << ")";
        return msg.str();
    }
    if (p.has_bias != 0 && p.has_bias != 1) return "has_bias must be 0 or 1";
    return {};
}

// Leading dims of x multiply to M; -1 (unknown at build time) propagates as -1.
int64_t rows_of(Dims const& x) {
    int64_t m = 1;
    for (int32_t i = 0; i + 1 < x.nbDims; ++i) {
        if (x.d[i] < 0) return -1;
        m *= x.d[i];
    }
    return m;
}

bool dim_is(int64_t actual, int64_t expected) { return actual < 0 || actual == expected; }

}  // namespace

void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept {
    nvinfer1::ILoggerFinder* expected = nullptr;
    gLoggerFinder.compare_exchange_strong(expected, finder);  // the first finder wins, as TensorRT expects
}

void log_message(ILogger::Severity severity, std::string const& message) noexcept {
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr) {
        logger->log(severity, message.c_str());
    } else if (severity <= ILogger::Severity::kWARNING) {
        std::fprintf(stderr, "[%s] %s\n", c::kOpType, message.c_str());
    }
}

// ------------------------------------------------------------------------------------ plugin

W4A16GemmPlugin::W4A16GemmPlugin(std::string name, W4A16Params const& params)
    : mName(std::move(name)), mParams(params) {
    refreshFields();
}

W4A16GemmPlugin::W4A16GemmPlugin(W4A16GemmPlugin const& other)
    : IPluginV3(other),
      IPluginV3OneCore(other),
      IPluginV3OneBuild(other),
      IPluginV3OneRuntime(other),
      mName(other.mName),
      mParams(other.mParams) {
    refreshFields();  // the field pointers must point into this copy, not into `other`
}

W4A16GemmPlugin::~W4A16GemmPlugin() { qvggt_w4a16_context_destroy(mContext); }

void W4A16GemmPlugin::prepareForRows(int64_t m) noexcept {
    if (mContext == nullptr || m <= 0) return;
    int dev = 0, major = 0, minor = 0, min_m = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
        qvggt_w4a16_dispatch_min_m(10 * major + minor, mParams.out_features, mParams.in_features, &min_m) !=
            QVGGT_W4A16_OK)
        return;
    if (min_m > 0 && m >= min_m && qvggt_w4a16_context_reserve_cublas(mContext) != QVGGT_W4A16_OK) {
        // -1: cuBLAS cannot be loaded, and AUTO stays with the fused kernels; any other status: enqueue
        // tries again (and reports a failure there).
        log_message(ILogger::Severity::kWARNING, std::string(c::kOpType) + " '" + mName +
                                                     "': cannot create a cuBLAS handle for M >= " +
                                                     std::to_string(min_m) + " (cublasStatus_t " +
                                                     std::to_string(qvggt_w4a16_last_cublas_status()) +
                                                     "; -1: cuBLAS not loadable, the fused kernel runs)");
    }
}

void W4A16GemmPlugin::refreshFields() noexcept {
    mFields.clear();
    for (int i = 0; i < 4; ++i) mFields.emplace_back(kFieldNames[i], field_slot(mParams, i), PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    std::ostringstream desc;
    desc << c::kAttrGroupSize << '=' << mParams.group_size << ';' << c::kAttrInFeatures << '=' << mParams.in_features
         << ';' << c::kAttrOutFeatures << '=' << mParams.out_features << ';' << c::kAttrHasBias << '='
         << mParams.has_bias;
    mDescription = desc.str();
}

void W4A16GemmPlugin::error(std::string const& what) const noexcept {
    log_message(ILogger::Severity::kERROR, std::string(c::kOpType) + " '" + mName + "': " + what);
}

IPluginCapability* W4A16GemmPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
    switch (type) {
        case PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* W4A16GemmPlugin::clone() noexcept {
    try {
        return new W4A16GemmPlugin(*this);
    } catch (std::exception const& e) {
        error(std::string("clone failed: ") + e.what());
        return nullptr;
    }
}

char const* W4A16GemmPlugin::getPluginName() const noexcept { return c::kOpType; }
char const* W4A16GemmPlugin::getPluginVersion() const noexcept { return c::kPluginVersion; }
char const* W4A16GemmPlugin::getPluginNamespace() const noexcept { return c::kPluginNamespace; }

int32_t W4A16GemmPlugin::getNbOutputs() const noexcept { return c::kNumOutputs; }

int32_t W4A16GemmPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                            int32_t nbInputs) const noexcept {
    (void)inputTypes;
    if (nbOutputs != c::kNumOutputs || nbInputs != numInputs()) {
        error("expected " + std::to_string(numInputs()) + " inputs and 1 output");
        return -1;
    }
    outputTypes[0] = DataType::kHALF;
    return 0;
}

int32_t W4A16GemmPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
                                         int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
                                         nvinfer1::IExprBuilder& exprBuilder) noexcept {
    (void)shapeInputs;
    (void)nbShapeInputs;
    if (nbInputs != numInputs() || nbOutputs != c::kNumOutputs || inputs[c::kInputX].nbDims < 1) {
        error("expected " + std::to_string(numInputs()) + " inputs (x of rank >= 1) and 1 output");
        return -1;
    }
    // y = x with its last dim K replaced by N: any leading dims (dynamic M) pass through.
    outputs[0] = inputs[c::kInputX];
    outputs[0].d[outputs[0].nbDims - 1] = exprBuilder.constant(mParams.out_features);
    return 0;
}

bool W4A16GemmPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                                int32_t nbOutputs) noexcept {
    if (pos < 0 || pos >= nbInputs + nbOutputs) return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR) return false;  // row-major, as the kernel reads and writes
    return desc.type == (pos == c::kInputQweight ? DataType::kINT32 : DataType::kHALF);
}

bool W4A16GemmPlugin::checkStaticDims(Dims const* dims, int32_t nbInputs) const noexcept {
    const int64_t k = mParams.in_features, n = mParams.out_features, g = mParams.group_size;
    Dims const& x = dims[c::kInputX];
    Dims const& qw = dims[c::kInputQweight];
    Dims const& s = dims[c::kInputScales];
    std::ostringstream msg;
    if (x.nbDims < 1 || !dim_is(x.d[x.nbDims - 1], k)) msg << "x must be [..., " << k << "]; ";
    if (qw.nbDims != 2 || !dim_is(qw.d[0], k / 64) || !dim_is(qw.d[1], 8 * n))
        msg << "qweight must be int32 [" << k / 64 << ", " << 8 * n << "]; ";
    if (s.nbDims != 2 || !dim_is(s.d[0], k / g) || !dim_is(s.d[1], n))
        msg << "scales must be fp16 [" << k / g << ", " << n << "]; ";
    if (nbInputs > c::kInputBias) {
        Dims const& b = dims[c::kInputBias];
        if (b.nbDims != 1 || !dim_is(b.d[0], n)) msg << "bias must be fp16 [" << n << "]; ";
    }
    if (msg.tellp() > 0) {
        error(msg.str() + "fields: " + mDescription);
        return false;
    }
    return true;
}

int32_t W4A16GemmPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                         DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    (void)out;
    if (nbInputs != numInputs() || nbOutputs != c::kNumOutputs) {
        error("expected " + std::to_string(numInputs()) + " inputs and 1 output (has_bias=" +
              std::to_string(mParams.has_bias) + ")");
        return -1;
    }
    Dims dims[4];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].desc.dims;
    return checkStaticDims(dims, nbInputs) ? 0 : -1;
}

size_t W4A16GemmPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                         DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept {
    (void)nbInputs;
    (void)outputs;
    (void)nbOutputs;
    // Sized for the profile's largest M; the kernel's bound holds for every smaller M too.
    int64_t m = rows_of(inputs[c::kInputX].max);
    if (m < 0 || m > INT_MAX) m = INT_MAX;
    size_t bytes = 0;
    if (qvggt_w4a16_workspace_size(static_cast<int>(m), mParams.out_features, mParams.in_features,
                                   mParams.group_size, &bytes) != QVGGT_W4A16_OK)
        return 0;
    return bytes;
}

char const* W4A16GemmPlugin::getTimingCacheID() noexcept { return mDescription.c_str(); }
char const* W4A16GemmPlugin::getMetadataString() noexcept { return mDescription.c_str(); }

int32_t W4A16GemmPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                       int32_t nbOutputs) noexcept {
    (void)out;
    if (nbInputs != numInputs() || nbOutputs != c::kNumOutputs) return -1;
    Dims dims[4];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].dims;
    if (!checkStaticDims(dims, nbInputs)) return -1;
    prepareForRows(rows_of(in[c::kInputX].dims));
    return 0;
}

int32_t W4A16GemmPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                                 void const* const* inputs, void* const* outputs, void* workspace,
                                 cudaStream_t stream) noexcept {
    (void)outputDesc;
    const int64_t m = rows_of(inputDesc[c::kInputX].dims);
    if (m < 0 || m > INT_MAX) {
        error("M = " + std::to_string(m) + " rows is out of range");
        return -1;
    }
    const int n = mParams.out_features, k = mParams.in_features, g = mParams.group_size;
    // TensorRT allocated getWorkspaceSize() for the largest M; the bound for this M is no larger.
    size_t workspace_bytes = 0;
    if (workspace != nullptr) qvggt_w4a16_workspace_size(static_cast<int>(m), n, k, g, &workspace_bytes);
    // AUTO: the dispatch table picks the fused kernels or dequantise + cuBLAS (this instance's handle).
    const int status = qvggt_w4a16_gemm_ctx(mContext, inputs[c::kInputX], inputs[c::kInputQweight],
                                            inputs[c::kInputScales], mParams.has_bias ? inputs[c::kInputBias] : nullptr,
                                            outputs[0], static_cast<int>(m), n, k, g, workspace, workspace_bytes,
                                            stream, QVGGT_W4A16_ALGO_AUTO, 0);
    if (status != QVGGT_W4A16_OK) {
        std::ostringstream msg;
        msg << "qvggt_w4a16_gemm(m=" << m << ", n=" << n << ", k=" << k << ", group=" << g
            << ") failed: " << qvggt_w4a16_status_string(status);
        if (status == QVGGT_W4A16_ERR_LAUNCH) msg << " (cudaError_t " << qvggt_w4a16_last_cuda_error() << ")";
        if (status == QVGGT_W4A16_ERR_CUBLAS) msg << " (cublasStatus_t " << qvggt_w4a16_last_cublas_status() << ")";
        error(msg.str());
    }
    return status;
}

IPluginV3* W4A16GemmPlugin::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept {
    (void)context;  // the weights are inputs and the scratch is TensorRT's workspace; cuBLAS is ours
    auto* runtime = static_cast<W4A16GemmPlugin*>(clone());
    if (runtime != nullptr && qvggt_w4a16_context_create(&runtime->mContext) != QVGGT_W4A16_OK) {
        // Without a context, calls use the library's per-thread one: still correct.
        error("qvggt_w4a16_context_create failed (cudaError_t " + std::to_string(qvggt_w4a16_last_cuda_error()) +
              "); using the library's per-thread context");
        runtime->mContext = nullptr;
    }
    return runtime;
}

PluginFieldCollection const* W4A16GemmPlugin::getFieldsToSerialize() noexcept {
    refreshFields();
    return &mFieldCollection;
}

// ----------------------------------------------------------------------------------- creator

W4A16GemmPluginCreator::W4A16GemmPluginCreator() {
    for (char const* name : kFieldNames) mFieldNames.emplace_back(name, nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* W4A16GemmPluginCreator::getPluginName() const noexcept { return c::kOpType; }
char const* W4A16GemmPluginCreator::getPluginVersion() const noexcept { return c::kPluginVersion; }
char const* W4A16GemmPluginCreator::getPluginNamespace() const noexcept { return c::kPluginNamespace; }
PluginFieldCollection const* W4A16GemmPluginCreator::getFieldNames() noexcept { return &mFieldCollection; }

IPluginV3* W4A16GemmPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc,
                                                nvinfer1::TensorRTPhase phase) noexcept {
    (void)phase;  // build and runtime get the same four fields (getFieldsToSerialize)
    std::string const layer = name != nullptr ? name : "";
    try {
        W4A16Params params;
        bool seen[4] = {false, false, false, false};
        for (int32_t f = 0; fc != nullptr && f < fc->nbFields; ++f) {
            PluginField const& field = fc->fields[f];
            for (int i = 0; i < 4; ++i) {
                if (field.name == nullptr || std::strcmp(field.name, kFieldNames[i]) != 0) continue;
                // The ONNX parser passes INT attributes as kINT32; the Python API often builds int64.
                if (field.length != 1 || field.data == nullptr ||
                    (field.type != PluginFieldType::kINT32 && field.type != PluginFieldType::kINT64)) {
                    log_message(ILogger::Severity::kERROR, std::string(c::kOpType) + " '" + layer + "': field " +
                                                               kFieldNames[i] + " must be one int32");
                    return nullptr;
                }
                const int64_t value = field.type == PluginFieldType::kINT32
                                          ? *static_cast<int32_t const*>(field.data)
                                          : *static_cast<int64_t const*>(field.data);
                if (value < INT_MIN || value > INT_MAX) {
                    log_message(ILogger::Severity::kERROR, std::string(c::kOpType) + " '" + layer + "': field " +
                                                               kFieldNames[i] + " out of int32 range");
                    return nullptr;
                }
                *field_slot(params, i) = static_cast<int32_t>(value);
                seen[i] = true;
            }
        }
        for (int i = 0; i < 4; ++i) {
            if (!seen[i]) {
                log_message(ILogger::Severity::kERROR,
                            std::string(c::kOpType) + " '" + layer + "': missing field " + kFieldNames[i]);
                return nullptr;
            }
        }
        std::string const why = invalid_params(params);
        if (!why.empty()) {
            log_message(ILogger::Severity::kERROR, std::string(c::kOpType) + " '" + layer + "': " + why);
            return nullptr;
        }
        return new W4A16GemmPlugin(layer, params);
    } catch (std::exception const& e) {
        log_message(ILogger::Severity::kERROR, std::string(c::kOpType) + " '" + layer + "': " + e.what());
        return nullptr;
    }
}

}  // namespace trt
}  // namespace qvggt
