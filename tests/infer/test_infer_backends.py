"""``qvggt infer`` writes the same folder from PyTorch and from ONNX Runtime (fp32 and W4A16
files of the micro preset), on two photos of different sizes; TensorRT where it is installed."""
import json

import numpy as np
import pytest
from PIL import Image

from qvggt_deploy.cli.main import main
from qvggt_deploy.data.writers import read_ply
from qvggt_deploy.lazy import is_available
from tests.micro_exports import export_and_torch_args, get_export

HAS_TRT = is_available("tensorrt")
TOL = dict(rtol=1e-4, atol=1e-4)  # the export tests' bound on exact-mode ORT vs PyTorch outputs


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A square photo and a 4:3 one: at 56 wide the second is 42 high, padded to 56 (7 rows each side)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, size in [("a.png", (64, 64)), ("b.jpg", (80, 60))]:
        Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize(size).save(folder / name)
    return folder


def infer(tmp_path, name, photos, *extra):
    out = tmp_path / name
    code = main(["infer", "--images", str(photos), "--out", str(out), "--conf-percentile", "0",
                 "--format", "colmap", "--format", "glb", *extra])
    assert code == 0
    return out


def read_colmap_lines(path):
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


def assert_same_folder(a, b, names=("a.png", "b.jpg"), n_points=56 * 56 + 56 * 42):
    """Same files, cameras, depth, points and COLMAP model within TOL; ``n_points``: every photo
    pixel of the network input (no padding) for the default photos."""
    ca, cb = (json.loads((d / "cameras.json").read_text()) for d in (a, b))
    assert ca["image_size_hw"] == cb["image_size_hw"] == [56, 56]
    assert [f["image"] for f in ca["frames"]] == [f["image"] for f in cb["frames"]] == list(names)
    for fa, fb in zip(ca["frames"], cb["frames"]):
        assert fa["placement"] == fb["placement"]
        for key in ("extrinsic", "intrinsic", "pose_enc"):
            np.testing.assert_allclose(fa[key], fb[key], **TOL)
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in names:
        if rel.suffix == ".npy":
            np.testing.assert_allclose(np.load(a / rel), np.load(b / rel), **TOL)
    pa, pb = read_ply(a / "points.ply"), read_ply(b / "points.ply")
    assert len(pa) == len(pb) == n_points
    for axis in "xyz":
        np.testing.assert_allclose(pa[axis], pb[axis], **TOL)
    for txt in ("cameras.txt", "images.txt", "points3D.txt"):
        la, lb = read_colmap_lines(a / "sparse" / txt), read_colmap_lines(b / "sparse" / txt)
        assert [len(x) for x in la] == [len(x) for x in lb]
        for xa, xb in zip(la, lb):
            if txt == "images.txt" and len(xa) == 10:
                assert xa[9] == xb[9] and xa[0] == xb[0] and xa[8] == xb[8]
                xa, xb = xa[1:8], xb[1:8]
            elif txt == "cameras.txt":
                assert xa[:4] == xb[:4]
                xa, xb = xa[4:], xb[4:]
            elif txt == "points3D.txt":
                assert xa[8:] == xb[8:]  # tracks
                xa, xb = xa[1:4], xb[1:4]
            np.testing.assert_allclose(np.array(xa, float), np.array(xb, float), **TOL)


@pytest.mark.parametrize("variant", ["fp32", "w4a16"])
def test_torch_and_ort_write_the_same_folder(tmp_path, photos, variant):
    result, torch_args = export_and_torch_args(variant, tmp_path)
    a = infer(tmp_path, "torch", photos, "--backend", "torch", *torch_args)
    b = infer(tmp_path, "ort", photos, "--backend", "ort", "--model", str(result.path))
    assert_same_folder(a, b)
    doc = json.loads((b / "cameras.json").read_text())
    assert doc["backend"] == "ort" and doc["model"] == str(result.path) and doc["preset"] == "micro"


@pytest.mark.parametrize("args,message", [
    (["--backend", "ort"], "--backend ort needs --model"),
    (["--backend", "torch", "--model", "x.onnx"], "the torch backend takes --preset"),
    (["--backend", "ort", "--model", "missing.onnx"], "file not found"),
])
def test_backend_and_model_mismatch_is_one_sentence(tmp_path, photos, log_text, args, message):
    assert main(["infer", "--images", str(photos), "--out", str(tmp_path / "o"), *args]) == 1
    assert message in log_text()
    assert not (tmp_path / "o").exists()


def test_ort_refuses_torch_only_options(tmp_path, photos, log_text):
    model = str(get_export("fp32")[0].path)
    assert main(["infer", "--images", str(photos), "--out", str(tmp_path / "o"), "--backend", "ort",
                 "--model", model, "--recipe", "r"]) == 1
    assert "--recipe apply to the torch backend" in log_text()


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed")
def test_trt_without_tensorrt_says_so(tmp_path, photos, log_text):
    engine = tmp_path / "vggt.engine"
    engine.write_bytes(b"not an engine")
    assert main(["infer", "--images", str(photos), "--out", str(tmp_path / "o"), "--backend", "trt",
                 "--model", str(engine)]) == 1
    assert "tensorrt is not installed" in log_text()
    assert not (tmp_path / "o").exists()


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed (TensorRT 10 and a GPU run this test)")
def test_trt_matches_ort(tmp_path, photos):
    from qvggt_deploy.trt.builder import build_engine
    from qvggt_deploy.trt.profiles import parse_profile

    profile = parse_profile({
        "name": "gpu-test", "device": {"memory_gib": 8.0, "unified_memory": False},
        "model": {"preset": "micro", "height": 56, "width": 56}, "frames": {"min": 1, "opt": 2, "max": 4},
        "builder": {"workspace_mib": 256, "optimization_level": 1}})
    onnx_path = get_export("fp32-trt")[0].path
    build_engine(onnx_path, profile, tmp_path / "vggt.engine")
    a = infer(tmp_path, "ort", photos, "--backend", "ort", "--model", str(get_export("fp32")[0].path))
    b = infer(tmp_path, "trt", photos, "--backend", "trt", "--model", str(tmp_path / "vggt.engine"))
    ca, cb = (json.loads((d / "cameras.json").read_text()) for d in (a, b))
    for fa, fb in zip(ca["frames"], cb["frames"]):
        np.testing.assert_allclose(fa["extrinsic"], fb["extrinsic"], atol=1e-2)
    np.testing.assert_allclose(np.load(a / "depth" / "000_a.npy"), np.load(b / "depth" / "000_a.npy"),
                               rtol=1e-2, atol=1e-2)
