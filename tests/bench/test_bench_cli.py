import json

import pytest

from qvggt_deploy.bench.run import Variant, measure
from qvggt_deploy.cli.main import main
from qvggt_deploy.errors import QvggtError


def test_bench_ort_side_by_side(exports, tmp_path):
    fp32, _, _ = exports("fp32")
    w4, _, _ = exports("w4a16")
    out = tmp_path / "bench.json"
    code = main(["bench", "--backend", "ort", "--model", f"fp32={fp32.path}", "--model", f"w4a16={w4.path}",
                 "--frames", "1", "--warmup", "0", "--runs", "2", "--threads", "1", "--json", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    fp, q = doc["results"]
    assert fp["label"] == "fp32" and fp["latency_ratio"] == 1.0
    assert len(q["latencies"]) == 2 and q["peak_rss_bytes"] > 0
    assert q["model_bytes"] < fp["model_bytes"] and q["size_ratio"] < 1
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "| w4a16 | ort |" in out.with_suffix(".md").read_text()


def test_bench_errors(tmp_path, caplog):
    assert main(["bench", "--backend", "ort", "--model", str(tmp_path / "none.onnx"), "--json", str(tmp_path / "b.json")]) == 1
    assert "file not found" in caplog.text
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(QvggtError, match="failed"):
        measure(Variant("bad", "ort", model=str(bad)), frames=1, warmup=0, runs=1)


def test_bench_interleaved(exports, tmp_path):
    fp32, _, _ = exports("fp32")
    w4, _, _ = exports("w4a16")
    out = tmp_path / "bench.json"
    assert main(["bench", "--backend", "ort", "--model", f"fp32={fp32.path}", "--model", f"w4a16={w4.path}",
                 "--frames", "1", "--warmup", "0", "--runs", "2", "--threads", "1", "--interleave", "--json", str(out)]) == 0
    fp, q = json.loads(out.read_text())["results"]
    assert fp["timing"] == "interleaved" and len(q["latencies"]) == 2 and q["peak_rss_bytes"] > 0


def test_bench_refuses_files_of_different_sizes_and_torch_interleave(exports, tmp_path, caplog):
    from qvggt_deploy.export.onnx import export_onnx
    from qvggt_deploy.model import build_model

    fp32, _, _ = exports("fp32")  # 56x56
    small = export_onnx(build_model("micro", seed=0), tmp_path / "small.onnx", height=42, width=42).path
    code = main(["bench", "--backend", "ort", "--model", f"a={fp32.path}", "--model", f"b={small}",
                 "--json", str(tmp_path / "b.json")])
    assert code == 1 and "different presets or sizes" in caplog.text and not (tmp_path / "b.json").exists()
    caplog.clear()
    code = main(["bench", "--backend", "torch", "--preset", "micro", "--interleave", "--json", str(tmp_path / "t.json")])
    assert code == 1 and "--interleave is for --backend ort" in caplog.text
