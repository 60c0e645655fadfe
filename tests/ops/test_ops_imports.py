"""Every qvggt_deploy.ops submodule imports with torch and numpy alone (no onnx, no library)."""
import importlib
import subprocess
import sys

import pytest

MODULES = ["layout", "reference", "w4a16", "linear", "plugin_contract", "build"]


@pytest.mark.parametrize("name", MODULES)
def test_imports_without_optional_packages(name):
    code = (f"import sys; import qvggt_deploy.ops.{name}; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'tensorrt') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_binding_loads_nothing_at_import():
    w4a16 = importlib.import_module("qvggt_deploy.ops.w4a16")
    assert w4a16._lib is None or w4a16.library_path().is_file()
