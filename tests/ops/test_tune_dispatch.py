"""benchmarks/tune_dispatch.py without a GPU: it refuses in one sentence and writes nothing; its
table writer is tested in tests/ops/test_ops_dispatch.py on planted timings."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tune_dispatch.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_refuses_without_a_gpu_and_writes_nothing(tmp_path):
    out = tmp_path / "table.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_shape_arguments_are_checked():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import tune_dispatch
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from qvggt_deploy.errors import QvggtError

    assert tune_dispatch.parse_shape("1024x3072") == (1024, 3072)
    with pytest.raises(QvggtError, match="KxN"):
        tune_dispatch.parse_shape("1024,3072")
