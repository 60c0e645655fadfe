"""``qvggt bench --backend trt`` end to end on the CPU: the worker process imports the fake
``tensorrt`` (tests/trt/fake_tensorrt.py) and a fake ``cuda.bindings.runtime``
(tests/trt/fake_cudart.py) through PYTHONPATH, so the CLI, the worker, the runner, CUDA-event
timing, CUDA-graph capture, the IProfiler and tegrastats sampling all run as on a device."""
import json
import os
import stat
from pathlib import Path

import pytest

import qvggt_deploy.lazy as lazy
from qvggt_deploy.bench.trt import is_plugin_layer, parse_tegrastats, plugin_layer_names, summarize_tegrastats
from qvggt_deploy.cli.main import main
from tests.trt import fake_tensorrt

ROOT = Path(__file__).resolve().parents[2]
HAS_TRT = lazy.is_available("tensorrt")
ORIN_LINE = ("RAM 2048/7620MB (lfb 4x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,off,off,off,2%@729,0%@729] "
             "EMC_FREQ 0% GR3D_FREQ 0% cpu@45.5C soc2@44C VDD_IN 5123mW/5000mW VDD_CPU_GPU_CV 1200mW/1100mW "
             "VDD_SOC 1500mW/1400mW")
LAYERS = [{"name": "aggregator.frame_blocks.0.attn.qkv", "ms": 30.0, "type": "PluginV3"},
          {"name": "/aggregator/Softmax", "ms": 12.0, "type": "CaskSoftmax"},
          {"name": "/heads/Conv + /heads/Relu", "ms": 6.0, "type": "CaskConvolution"},
          {"name": "/heads/Add", "ms": 2.0, "type": "PointWiseV2"}]
SPEC = {"inputs": {"images": {"shape": [-1, 3, 56, 56], "min": [1, 3, 56, 56], "opt": [2, 3, 56, 56],
                              "max": [4, 3, 56, 56]}},
        "outputs": {"pose_enc": [1, -1, 9], "depth": [1, -1, 56, 56, 1], "depth_conf": [1, -1, 56, 56],
                    "world_points": [1, -1, 56, 56, 3], "world_points_conf": [1, -1, 56, 56]},
        "layers": LAYERS, "device_memory": 3 << 20, "detailed": True}


@pytest.fixture()
def fake_gpu(tmp_path, monkeypatch):
    """Fake tensorrt, cuda.bindings.runtime and tegrastats for the worker process; an engine file."""
    fakes = tmp_path / "fakes"
    (fakes / "tensorrt").mkdir(parents=True)
    (fakes / "tensorrt" / "__init__.py").write_text(
        "import atexit, json, os, sys\n"
        "from tests.trt import fake_tensorrt\n"
        "_m = fake_tensorrt.make_module()\n"
        "atexit.register(lambda: json.dump(_m.STATE, open(os.environ['QVGGT_FAKE_TRT_LOG'], 'w')))\n"
        "sys.modules[__name__] = _m\n")
    (fakes / "cuda" / "bindings").mkdir(parents=True)
    (fakes / "cuda" / "__init__.py").write_text("")
    (fakes / "cuda" / "bindings" / "__init__.py").write_text("")
    (fakes / "cuda" / "bindings" / "runtime.py").write_text(
        "import importlib, sys\nsys.modules[__name__] = importlib.import_module('tests.trt.fake_cudart')\n")
    tegra = fakes / "bin" / "tegrastats"
    tegra.parent.mkdir()
    tegra.write_text(f"#!/bin/sh\nwhile true; do echo '{ORIN_LINE}'; sleep 0.02; done\n")
    tegra.chmod(tegra.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fakes), str(ROOT)]))
    monkeypatch.setenv("PATH", os.pathsep.join([str(tegra.parent), os.environ["PATH"]]))
    monkeypatch.setenv("QVGGT_FAKE_TRT_LOG", str(tmp_path / "fake_trt.json"))
    monkeypatch.setenv("QVGGT_FAKE_CUDA_LOG", str(tmp_path / "fake_cuda.json"))
    real = lazy.is_available
    monkeypatch.setattr(lazy, "is_available", lambda name: name == "tensorrt" or real(name))  # the CLI's own check
    engine = tmp_path / "vggt.engine"
    engine.write_bytes(fake_tensorrt.engine_bytes(SPEC))
    return engine


def bench(tmp_path, engine, *extra):
    out = tmp_path / "trt"
    code = main(["bench", "--backend", "trt", "--engine", f"w4a16={engine}", "--frames", "2", "--warmup", "1",
                 "--runs", "3", "--layers", "3", "--out", str(out), *extra])
    return code, out


def test_trt_bench_end_to_end(tmp_path, fake_gpu):
    code, out = bench(tmp_path, fake_gpu, "--tegrastats", "on")
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    r = doc["results"][0]
    total_s = sum(layer["ms"] for layer in LAYERS) / 1e3  # the fake engine sleeps this long per enqueue
    assert r["backend"] == "trt" and r["label"] == "w4a16" and (r["height"], r["width"], r["frames"]) == (56, 56, 2)
    assert len(r["latencies"]) == 3 and total_s <= min(r["latencies"]) < total_s + 0.5
    assert r["median"] <= r["p90"] <= max(r["latencies"]) and r["timing"] == "cuda events"
    assert r["end_to_end_median"] >= total_s and r["latency_ratio"] == 1.0
    assert r["activation_bytes"] == 3 << 20 and r["model_bytes"] == fake_gpu.stat().st_size
    assert r["device_bytes_after_first_run"] >= 2 * 3 * 56 * 56 * 4  # the input buffer at least
    layers = r["layers"]
    assert layers["count"] == 4 and [row["layer"] for row in layers["slowest"]] == [x["name"] for x in LAYERS[:3]]
    assert [row["plugin"] for row in layers["slowest"]] == [True, False, False]
    assert layers["slowest"][0]["mean_ms"] == 30.0 and layers["plugin_share"] == pytest.approx(30 / 50)
    stats = r["tegrastats"]
    assert stats["samples"] >= 1 and stats["ram_peak_mb"] == 2048 and stats["power_mw"]["VDD_IN"]["peak"] == 5123
    assert r["device"]["name"] == "Fake GPU"
    trt_log, cuda_log = (json.loads((tmp_path / n).read_text()) for n in ("fake_trt.json", "fake_cuda.json"))
    # warm-up infer 1 + warm-up enqueue 1 + timed 3 + end-to-end 3 + profiled 3
    assert trt_log["executions"] == 11 and cuda_log["graph_launches"] == 0 and cuda_log["captures"] == 0
    md = (out / "bench.md").read_text()
    assert md.startswith("# qvggt bench (trt, 2 frames at 56x56)") and "| variant | backend |" in md
    assert "## TensorRT: w4a16" in md and "| `aggregator.frame_blocks.0.attn.qkv` | 0 | 30.0000 | 60.0% | yes |" in md
    assert "tegrastats (" in md and "VDD_IN mean 5123 / peak 5123 mW" in md
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_cuda_graph_replays_the_captured_enqueue(tmp_path, fake_gpu):
    code, out = bench(tmp_path, fake_gpu, "--cuda-graph", "--tegrastats", "off", "--layers", "0")
    assert code == 0
    r = json.loads((out / "bench.json").read_text())["results"][0]
    cuda_log = json.loads((tmp_path / "fake_cuda.json").read_text())
    assert cuda_log["captures"] == 1 and cuda_log["graph_launches"] == 1 + 3  # warm-up + timed
    assert r["cuda_graph"] is True and r["timing"] == "cuda events (CUDA graph)" and r["tegrastats"] is None
    assert min(r["latencies"]) >= 0.05 and r["layers"] is None  # a replay lasts as long as the capture


def test_trt_options_are_checked(tmp_path, fake_gpu, caplog):
    code, _ = bench(tmp_path, tmp_path / "missing.engine")
    assert code == 1 and "--engine w4a16: file not found" in caplog.text
    code = main(["bench", "--backend", "ort", "--engine", str(fake_gpu), "--out", str(tmp_path / "x")])
    assert code == 1 and "--engine is for --backend trt" in caplog.text


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_trt_bench_without_tensorrt_is_one_sentence(tmp_path, caplog):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"x")
    assert main(["bench", "--backend", "trt", "--engine", str(engine), "--out", str(tmp_path / "t")]) == 1
    assert "tensorrt is not installed" in caplog.text and not (tmp_path / "t").exists()


def test_plugin_layers_from_the_inspector_and_the_onnx_file(tmp_path):
    import onnx
    from onnx import helper

    trt = fake_tensorrt.make_module()
    engine = trt.Runtime(None).deserialize_cuda_engine(fake_tensorrt.engine_bytes(SPEC))
    assert plugin_layer_names(trt, engine) == {"aggregator.frame_blocks.0.attn.qkv"}
    names_only = trt.Runtime(None).deserialize_cuda_engine(fake_tensorrt.engine_bytes({**SPEC, "detailed": False}))
    assert plugin_layer_names(trt, names_only) == set()
    node = helper.make_node("QvggtW4A16Gemm", ["x", "w", "s"], ["y"], name="blocks.0.mlp.fc1", domain="trt.plugins")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "m.onnx"))
    names = plugin_layer_names(trt, names_only, str(tmp_path / "m.onnx"))
    assert names == {"blocks.0.mlp.fc1"}
    assert is_plugin_layer("blocks.0.mlp.fc1 + /act/Gelu", names) and not is_plugin_layer("blocks.0.mlp.fc2", names)


def test_tegrastats_lines_parse_and_summarise():
    sample = parse_tegrastats(ORIN_LINE)
    assert sample == {"ram_mb": 2048, "ram_total_mb": 7620,
                      "power_mw": {"VDD_IN": 5123, "VDD_CPU_GPU_CV": 1200, "VDD_SOC": 1500}}
    assert parse_tegrastats("no memory here") is None
    other = parse_tegrastats(ORIN_LINE.replace("RAM 2048", "RAM 3072").replace("VDD_IN 5123", "VDD_IN 7123"))
    summary = summarize_tegrastats([sample, other])
    assert summary["ram_peak_mb"] == 3072 and summary["ram_mean_mb"] == 2560
    assert summary["power_mw"]["VDD_IN"] == {"mean": 6123.0, "peak": 7123}
    assert summarize_tegrastats([]) == {"samples": 0}
