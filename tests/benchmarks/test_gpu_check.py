"""benchmarks/gpu_check.py without a GPU: it refuses to report; its shapes, weight bytes, ratios and
targets are computed right from planted numbers; its sections are written as they end (with the GPU
work replaced by stand-ins); its end-to-end plumbing runs on CPU with the tiny preset."""
import json

import pytest
import torch

from tests.benchmarks.scripts import BENCHMARKS, load_benchmark

SCRIPT = BENCHMARKS / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    return load_benchmark("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_refuses_without_cuda_and_writes_nothing(gpu_check, tmp_path, capsys):
    assert gpu_check.main([str(tmp_path / "report.json")]) == 2
    assert not (tmp_path / "report.json").exists()
    assert "nothing measured" in capsys.readouterr().err


BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = {"onnx", "onnxruntime", "polygraphy", "onnx_graphsurgeon", "yaml", "safetensors", "tqdm", "PIL",
           "matplotlib", "trimesh", "pycolmap", "huggingface_hub", "tensorrt", "cuda"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, Block())
g = runpy.run_path(sys.argv[1], run_name="gpu_check_probe")
g["derive"]({"weights": g["run_weights"](None, "micro", 32), "shapes": g["vggt_shapes"]("micro", 32)})
print("ok")
"""


def test_runs_without_the_project_venv():
    """The device machine has a CUDA torch and nvcc, not the project's dependencies: the script
    and the CPU parts of its sections work with those imports failing."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", BLOCKER, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_vggt_1b_shapes_are_every_converted_linear(gpu_check):
    shapes = {(s["k"], s["n"]): s for s in gpu_check.vggt_shapes()}
    assert {k: s["layers"] for k, s in shapes.items()} == {
        (1024, 1024): 72, (1024, 3072): 72, (1024, 4096): 72, (4096, 1024): 72,  # 24 ViT + 48 aggregator blocks
        (2048, 1024): 1, (2048, 2048): 4, (2048, 6144): 5, (2048, 8192): 4, (8192, 2048): 4}  # camera head
    assert shapes[(2048, 6144)]["where"] == ["camera_head"]


def test_weight_bytes_match_what_w4a16linear_stores(gpu_check):
    """The analytic byte count equals the buffers of a really converted (micro) model."""
    from qvggt_deploy.model import build_model, get_preset
    from qvggt_deploy.ops.linear import W4A16Linear, convert_model_to_w4a16, rtn_w4a16_layers

    doc = gpu_check.run_weights(None, "micro", 32)
    model = build_model(get_preset("micro").replace(enable_track=False), seed=0)
    fp32 = sum(t.numel() * 4 for t in list(model.parameters()) + list(model.buffers()))
    convert_model_to_w4a16(model, rtn_w4a16_layers(model, 32, filter_fn=gpu_check._wanted))
    modules = [m for m in model.modules() if isinstance(m, W4A16Linear)]
    stored = sum(b.numel() * b.element_size() for m in modules for b in m.buffers())
    assert doc["linears"]["layers"] == len(modules) > 0
    assert doc["linears"]["w4a16_bytes"] == stored
    assert doc["model"]["fp32_bytes"] == fp32 and doc["model"]["fp16_bytes"] == fp32 // 2


def test_vggt_1b_weight_ratio(gpu_check):
    doc = gpu_check.run_weights(None)
    lin = doc["linears"]
    assert lin["layers"] == 4 * 72 + 18  # 4 per ViT / aggregator block, 18 in the camera head
    # int4 + one fp16 scale per 128 weights: 2 / (0.5 + 2/128) = 3.88x, a little less with the fp16 biases
    assert 3.85 < lin["fp16_bytes"] / lin["w4a16_bytes"] < 3.88
    assert doc["model"]["fp16_bytes"] / doc["model"]["w4a16_bytes"] < lin["fp16_bytes"] / lin["w4a16_bytes"]


def planted_report(gpu_check):
    shapes = [{"k": 1024, "n": 1024, "layers": 72}, {"k": 4096, "n": 1024, "layers": 72}]
    gemm = []
    for s in shapes:
        for m, ours, fp16, deq in ((1, 1.0, 2.5, 3.0), (16, 1.0, 1.8, 3.0), (2048, 10.0, 9.5, 9.0)):
            if s["k"] == 4096 and m == 2048:
                ours = 12.0  # 9.5 / 12 = 0.79x: misses 0.9x
            gemm.append({"m": m, "k": s["k"], "n": s["n"], "w4a16_auto_s": ours * 1e-6, "fp16_cublas_s": fp16 * 1e-6,
                         "dequant_cublas_s": deq * 1e-6})
    lat = {"fp32": (3.0, 12.0), "fp32_tf32": (1.5, 6.0), "fp16": (1.0, 4.0), "w4a16": (1.05, 4.2),
           "w4a16_hybrid": (0.9, 3.9)}
    runs = [{"mode": mode, "frames": s, "latency_s": v[i]} for mode, v in lat.items() for i, s in enumerate((2, 8))]
    runs.append({"mode": "w4a16", "frames": 4, "error": "RuntimeError('oom')"})
    weights = {"linears": {"fp32_bytes": 800, "fp16_bytes": 400, "w4a16_bytes": 100},
               "model": {"fp32_bytes": 1000, "fp16_bytes": 500, "w4a16_bytes": 200}}
    return {"shapes": shapes, "gemm_m": [1, 16, 2048], "gemm": gemm, "e2e": {"runs": runs}, "weights": weights}


def test_ratios_and_targets_from_planted_timings(gpu_check):
    report = planted_report(gpu_check)
    derived = gpu_check.derive(report)
    ratios = {(r["k"], r["m"]): r for r in derived["ratios"]["gemm"]}
    assert ratios[(1024, 1)]["kernel_vs_cublas_fp16"] == pytest.approx(2.5)
    assert ratios[(1024, 1)]["best_vs_cublas_fp16"] == pytest.approx(2.5)  # dequant + cuBLAS is slower there
    assert ratios[(4096, 2048)]["kernel_vs_cublas_fp16"] == pytest.approx(9.5 / 12)
    assert ratios[(4096, 2048)]["best_vs_cublas_fp16"] == pytest.approx(9.5 / 9)
    e2e = derived["ratios"]["e2e"]
    assert e2e["2"]["w4a16"]["vs_fp32_tf32_off"] == pytest.approx(3.0 / 1.05)
    assert e2e["8"]["w4a16"]["vs_fp32_tf32_on"] == pytest.approx(6.0 / 4.2)
    assert e2e["8"]["w4a16"]["latency_over_fp16"] == pytest.approx(1.05)
    assert "4" not in e2e  # the failed run has no latency
    assert derived["ratios"]["weights"]["linears"]["fp16_over_w4a16"] == 4.0

    t = derived["targets"]
    large = t["gemm_large_m_vs_cublas_fp16"]
    assert large["passed"] is False and large["n_failing"] == 1 and large["n_measured"] == 2
    assert large["worst"]["case"] == "K4096 N1024 M2048" and large["worst"]["value"] == pytest.approx(9.5 / 12)
    small = t["gemm_small_m_vs_fp16"]
    assert small["passed"] is False and small["worst"]["case"].endswith("M16")  # 1.8x < 2x
    assert t["e2e_vs_fp32_tf32_off"]["passed"] is True and t["e2e_vs_fp32_tf32_on"]["passed"] is False
    assert t["e2e_vs_fp16"]["passed"] is True  # 1.05 <= 1.1
    assert t["e2e_vs_fp16"]["cases"][0]["w4a16_hybrid"] == pytest.approx(0.9)
    assert t["weights_linears_vs_fp16"]["passed"] is True and t["weights_model_vs_fp16"]["passed"] is False


def test_targets_are_null_until_every_case_is_measured(gpu_check):
    report = planted_report(gpu_check)
    report["gemm"] = [r for r in report["gemm"] if not (r["k"] == 4096 and r["m"] >= 16)]  # stopped at its budget
    report["e2e"]["runs"] = [r for r in report["e2e"]["runs"] if r["frames"] == 2]
    del report["weights"]
    t = gpu_check.targets(report)
    assert t["gemm_large_m_vs_cublas_fp16"]["passed"] is None  # K1024 passes, K4096 not measured
    assert t["gemm_large_m_vs_cublas_fp16"]["missing"] == ["K4096 N1024 M2048"]
    assert t["gemm_small_m_vs_fp16"]["passed"] is False  # a measured miss is a miss
    assert t["e2e_vs_fp32_tf32_off"]["passed"] is None and t["e2e_vs_fp32_tf32_off"]["missing"] == ["8 frames"]
    assert t["weights_linears_vs_fp16"]["passed"] is None and t["weights_linears_vs_fp16"]["n_measured"] == 0


def test_gemm_rows_in_target_order(gpu_check):
    shapes = [{"k": 1}, {"k": 2}]
    order = gpu_check.gemm_order(shapes, [1, 16, 32, 1024, 2048, 4096])
    assert [m for m, _ in order] == [1, 1, 16, 16, 2048, 2048, 4096, 4096, 32, 32, 1024, 1024]


def test_main_writes_each_section_and_keeps_going(gpu_check, tmp_path, monkeypatch):
    """main() with the GPU work replaced: a failing section is recorded, the others run, the
    targets are there, and the exit code says a section failed."""
    out = tmp_path / "gpu.json"
    seen = {}

    def gemm(ctx, shapes, quick, group=128):
        seen["before_gemm"] = json.loads(out.read_text())["sections"]["weights"]["status"]
        rows = []
        for m, s in ctx.iterate(gpu_check.gemm_order(shapes[:1], [1, 2048]), "rows"):
            rows.append({"m": m, "k": s["k"], "n": s["n"], "w4a16_auto_s": 1.0, "fp16_cublas_s": 3.0,
                         "dequant_cublas_s": 2.0})
            ctx.data = rows
        return rows

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "run_env", lambda ctx: {"device": "stand-in"})
    monkeypatch.setattr(gpu_check, "run_library", lambda ctx: {"path": "stand-in"})
    monkeypatch.setattr(gpu_check, "run_correctness", lambda ctx, shapes, quick: {"passed": True, "n_cases": 1,
                                                                                   "n_failed": 0, "cases": []})
    monkeypatch.setattr(gpu_check, "run_gemm", gemm)

    def e2e(ctx, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(gpu_check, "run_e2e", e2e)
    assert gpu_check.main([str(out), "--skip-algos", "--budget", "gemm=100"]) == 1
    report = json.loads(out.read_text())
    status = {n: e["status"] for n, e in report["sections"].items()}
    assert status == {"env": "ok", "library": "ok", "correctness": "ok", "weights": "ok", "gemm": "ok",
                      "e2e": "failed", "algos": "not-run"}
    assert seen["before_gemm"] == "ok"
    assert report["sections"]["algos"]["reason"] == "--skip-algos" and report["sections"]["gemm"]["budget_s"] == 100
    assert "out of memory" in report["sections"]["e2e"]["error"]
    assert report["targets"]["gemm_small_m_vs_fp16"]["cases"][0]["value"] == 3.0
    assert report["targets"]["weights_linears_vs_fp16"]["passed"] is True and report["exit_code"] == 1


def test_bad_budget_flag(gpu_check):
    with pytest.raises(SystemExit, match="NAME one of"):
        gpu_check.parse_budgets(["gemmm=3"])
    assert gpu_check.parse_budgets(["e2e=9.5"])["e2e"] == 9.5


@pytest.mark.slow
def test_e2e_plumbing_on_cpu(gpu_check):
    doc = gpu_check.run_e2e(None, "cpu", preset="tiny", frames=(1,), group=64, modes=("fp32", "fp32_tf32", "w4a16"),
                            reps=1, size=112)
    fp32, tf32, w4 = doc["runs"]
    assert (fp32["mode"], tf32["mode"], w4["mode"]) == ("fp32", "fp32_tf32", "w4a16") and w4["frames"] == 1
    assert fp32["tf32"] == {"matmul": False, "cudnn": False} and tf32["tf32"] == {"matmul": True, "cudnn": True}
    assert not torch.backends.cuda.matmul.allow_tf32  # restored
    assert doc["weights"].startswith("random")
    assert w4["converted_linears"] > 0 and w4["weight_bytes"] < fp32["weight_bytes"]
    # the 9-wide pose layers cannot use the kernel and are reported, not hidden
    assert w4["unconverted_linears"] == ["camera_head.embed_pose", "camera_head.pose_branch.fc2"]
    assert set(w4["rel_l2_vs_fp32"]) == {"pose_enc", "depth", "world_points"}
