#!/usr/bin/env bash
# Compile-check the TensorRT plugin against real TensorRT headers, without libnvinfer.
#
#   TRT_INCLUDE=/path/to/TensorRT/include kernels/check_plugin_compile.sh [OUT_DIR]
#
# TRT_INCLUDE (or QVGGT_TRT_INCLUDE) is a folder holding NvInferRuntime.h, e.g. the include/
# of NVIDIA/TensorRT's release/10.3 branch (JetPack 6 ships TensorRT 10.3) or JetPack's
# /usr/include/aarch64-linux-gnu. Steps:
#   1. g++ -c the plugin (warnings are errors; TensorRT and CUDA headers are -isystem),
#      in both flavours: entry points (default) and static registration;
#   2. the kernel objects for one architecture (ARCH, default 87) via kernels/Makefile;
#   3. link libqvggt_trt_plugin.so with -Wl,--no-undefined against the static CUDA runtime:
#      proves nothing but the driver and the C/C++ runtime is needed (no libnvinfer);
#   4. check that it exports exactly getCreators and setLoggerFinder, and that the static
#      flavour's only TensorRT dependency is getPluginRegistry (libnvinfer provides it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TRT_INCLUDE="${TRT_INCLUDE:-${QVGGT_TRT_INCLUDE:-}}"
if [[ -z "$TRT_INCLUDE" || ! -f "$TRT_INCLUDE/NvInferRuntime.h" ]]; then
  echo "error: set TRT_INCLUDE (or QVGGT_TRT_INCLUDE) to a TensorRT include folder with NvInferRuntime.h" >&2
  exit 2
fi
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
CXX="${CXX:-g++}"
ARCH="${ARCH:-87}"
OUT="${1:-$HERE/build/plugin-check}"
mkdir -p "$OUT"

version() {  # NV_TENSORRT_MAJOR may name another macro (TensorRT 11: TRT_MAJOR_ENTERPRISE)
  local v="" x
  for key in MAJOR MINOR PATCH; do
    x="$(sed -n "s/^#define NV_TENSORRT_${key} \([0-9A-Za-z_]*\).*/\1/p" "$TRT_INCLUDE/NvInferVersion.h" | head -1)"
    if [[ ! "$x" =~ ^[0-9]+$ ]]; then
      x="$(sed -n "s/^#define ${x} \([0-9]*\).*/\1/p" "$TRT_INCLUDE/NvInferVersion.h" | head -1)"
    fi
    v+="${x:-?}."
  done
  echo "${v%.}"
}
echo "TensorRT headers: $TRT_INCLUDE (NvInferVersion.h: $(version))"

CXXFLAGS=(-std=c++17 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror
          -isystem "$TRT_INCLUDE" -isystem "$CUDA_HOME/include" -I "$HERE")
set -x
"$CXX" "${CXXFLAGS[@]}" -c "$HERE/trt_plugin/w4a16_plugin.cpp" -o "$OUT/w4a16_plugin.o"
"$CXX" "${CXXFLAGS[@]}" -c "$HERE/trt_plugin/plugin_entry.cpp" -o "$OUT/plugin_entry.o"
"$CXX" "${CXXFLAGS[@]}" -DQVGGT_TRT_STATIC_REGISTRATION -c "$HERE/trt_plugin/plugin_entry.cpp" \
  -o "$OUT/plugin_entry_static.o"
make -s -C "$HERE" ARCHS="$ARCH" BUILD_DIR="$OUT/kernel" NVCC="${NVCC:-$CUDA_HOME/bin/nvcc}" >/dev/null
"$CXX" -shared -o "$OUT/libqvggt_trt_plugin.so" "$OUT/w4a16_plugin.o" "$OUT/plugin_entry.o" \
  "$OUT"/kernel/obj-"$ARCH"/*.o -L"$CUDA_HOME/lib64" -lcudart_static -ldl -lpthread -lrt \
  -Wl,--version-script="$HERE/trt_plugin/exports.map" -Wl,--no-undefined
set +x

exported="$(nm -D --defined-only "$OUT/libqvggt_trt_plugin.so" | awk '$2 == "T" {print $3}' | sort | tr '\n' ' ')"
if [[ "$exported" != "getCreators setLoggerFinder " ]]; then
  echo "error: unexpected exports: $exported" >&2
  exit 1
fi
undefined="$(nm -u -C "$OUT/plugin_entry_static.o" | grep -c getPluginRegistry || true)"
if [[ "$undefined" -lt 1 ]]; then
  echo "error: the static flavour does not reference getPluginRegistry" >&2
  exit 1
fi
echo "OK: plugin compiled against TensorRT $(version); $OUT/libqvggt_trt_plugin.so exports: $exported"
