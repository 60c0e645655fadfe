import json

import pytest

from qvggt_deploy.bench.run import Variant, measure
from qvggt_deploy.cli.main import main
from qvggt_deploy.errors import QvggtError


def test_bench_ort_side_by_side(exports, tmp_path):
    fp32, _, _ = exports("fp32")
    w4, _, _ = exports("w4a16")
    out = tmp_path / "bench"
    code = main(["bench", "--backend", "ort", "--model", f"fp32={fp32.path}", "--model", f"w4a16={w4.path}",
                 "--frames", "1", "--warmup", "0", "--runs", "2", "--threads", "1", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    fp, q = doc["results"]
    assert fp["label"] == "fp32" and fp["latency_ratio"] == 1.0
    assert len(q["latencies"]) == 2 and q["peak_rss_bytes"] > 0
    assert q["model_bytes"] < fp["model_bytes"] and q["size_ratio"] < 1
    assert doc["settings"]["models"] == [f"fp32={fp32.path}", f"w4a16={w4.path}"] and doc["settings"]["runs"] == 2
    assert (out / "bench.png").stat().st_size > 1000
    assert "| w4a16 | ort |" in (out / "bench.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "bench.png"]


def test_bench_errors(tmp_path, caplog):
    assert main(["bench", "--backend", "ort", "--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "b")]) == 1
    assert "file not found" in caplog.text
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(QvggtError, match="failed"):
        measure(Variant("bad", "ort", model=str(bad)), frames=1, warmup=0, runs=1)


def test_bench_interleaved_with_the_deprecated_json_option(exports, tmp_path, capsys):
    fp32, _, _ = exports("fp32")
    w4, _, _ = exports("w4a16")
    out = tmp_path / "bench.json"  # the old spelling: FILE.json with .md and .png beside it
    assert main(["bench", "--backend", "ort", "--model", f"fp32={fp32.path}", "--model", f"w4a16={w4.path}",
                 "--frames", "1", "--warmup", "0", "--runs", "2", "--threads", "1", "--interleave", "--json", str(out)]) == 0
    assert "--json is deprecated" in capsys.readouterr().err
    fp, q = json.loads(out.read_text())["results"]
    assert fp["timing"] == "interleaved" and len(q["latencies"]) == 2 and q["peak_rss_bytes"] > 0
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()


def test_bench_refuses_files_of_different_sizes_and_torch_interleave(exports, tmp_path, caplog):
    from qvggt_deploy.export.onnx import export_onnx
    from qvggt_deploy.model import build_model

    fp32, _, _ = exports("fp32")  # 56x56
    small = export_onnx(build_model("micro", seed=0), tmp_path / "small.onnx", height=42, width=42).path
    code = main(["bench", "--backend", "ort", "--model", f"a={fp32.path}", "--model", f"b={small}",
                 "--out", str(tmp_path / "b")])
    assert code == 1 and "different presets or sizes" in caplog.text and not (tmp_path / "b").exists()
    caplog.clear()
    code = main(["bench", "--backend", "torch", "--preset", "micro", "--interleave", "--out", str(tmp_path / "t")])
    assert code == 1 and "--interleave is for --backend ort" in caplog.text
