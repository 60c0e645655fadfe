// How TensorRT finds the plugin. One source, two libraries (kernels/trt_plugin/CMakeLists.txt):
//
// libqvggt_trt_plugin.so (default): the TensorRT 10 plugin-library entry points
//   getCreators() and setLoggerFinder(), read by IPluginRegistry::loadLibrary (C++),
//   trt.get_plugin_registry().load_library (Python), `trtexec --dynamicPlugins=...` and
//   `--setPluginsToSerialize=...`. Needs no libnvinfer at link time.
//   (getPluginCreators() is the deprecated IPluginCreator/V2 variant; a V3 creator is an
//   IPluginCreatorInterface and is listed by getCreators() only.)
//
// libqvggt_trt_plugin_static.so (-DQVGGT_TRT_STATIC_REGISTRATION): registers the creator from
//   a static initialiser when the library is dlopen()ed: `trtexec --staticPlugins=...`,
//   Polygraphy's --plugins / ctypes.CDLL. Links libnvinfer (getPluginRegistry).
//
// Never load both into one process: loadLibrary() refuses a library whose creators are
// already registered.
#include "w4a16_plugin.h"

#include <cstdint>

#if defined(_WIN32)
#define QVGGT_TRT_API __declspec(dllexport)
#else
#define QVGGT_TRT_API __attribute__((visibility("default")))
#endif

#ifdef QVGGT_TRT_STATIC_REGISTRATION

// The macro pastes its argument into a variable name: it needs an unqualified name.
using qvggt::trt::W4A16GemmPluginCreator;
REGISTER_TENSORRT_PLUGIN(W4A16GemmPluginCreator);

#else

extern "C" QVGGT_TRT_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    qvggt::trt::set_logger_finder(finder);
}

extern "C" QVGGT_TRT_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static qvggt::trt::W4A16GemmPluginCreator creator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

#endif
