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
