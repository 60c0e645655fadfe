"""Compiles the TensorRT plugin against real TensorRT headers (kernels/check_plugin_compile.sh).

Point QVGGT_TRT_INCLUDE at a TensorRT include folder, e.g. the include/ of NVIDIA/TensorRT's
release/10.3 branch (the headers are not in this repository) or JetPack's
/usr/include/aarch64-linux-gnu."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from qvggt_deploy.ops.build import find_nvcc

SCRIPT = Path(__file__).resolve().parents[2] / "kernels" / "check_plugin_compile.sh"
TRT_INCLUDE = os.environ.get("QVGGT_TRT_INCLUDE", "")


@pytest.mark.nvcc
@pytest.mark.skipif(not TRT_INCLUDE or not Path(TRT_INCLUDE, "NvInferRuntime.h").is_file(),
                    reason="set QVGGT_TRT_INCLUDE to a TensorRT include folder (with NvInferRuntime.h)")
@pytest.mark.skipif(find_nvcc() is None or shutil.which("g++") is None, reason="needs nvcc and g++")
def test_plugin_compiles_links_and_exports_the_entry_points(tmp_path):
    nvcc = find_nvcc()
    env = dict(os.environ, TRT_INCLUDE=TRT_INCLUDE, NVCC=nvcc)
    cuda_home = Path(nvcc).resolve().parents[1]  # /usr/local/bin/nvcc may be a link into the toolkit
    if "CUDA_HOME" not in env and (cuda_home / "include" / "cuda_runtime_api.h").is_file():
        env["CUDA_HOME"] = str(cuda_home)
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK: plugin compiled against TensorRT" in proc.stdout
    assert (tmp_path / "libqvggt_trt_plugin.so").is_file()
