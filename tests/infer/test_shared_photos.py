"""``qvggt infer`` on real photos of mixed sizes (../shared/images): PyTorch and ONNX Runtime (fp32
and W4A16 files) agree, the COLMAP model reads back with pycolmap and its points lie on the
predicted depth, and the GLB holds every point and one frustum per camera."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qvggt_deploy.cli.main import main
from tests.infer.test_infer_backends import assert_same_folder
from tests.micro_exports import export_and_torch_args, get_export

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"
# 779x520, 512x384 and 1280x960: three sizes, two aspect ratios, PNG and JPEG
PICKS = ["kitchen/images/00.png", "room/images/no_overlap_1.png", "room/images/no_overlap_2.jpg"]
NAMES = ["00.png", "no_overlap_1.png", "no_overlap_2.jpg"]


@pytest.fixture(scope="module")
def shared_photos(tmp_path_factory):
    if not all((SHARED / p).is_file() for p in PICKS):
        pytest.skip(f"the shared photos are not at {SHARED}")
    folder = tmp_path_factory.mktemp("shared")
    for pick in PICKS:
        shutil.copy(SHARED / pick, folder / Path(pick).name)
    return folder


def infer(out, photos, *extra):
    assert main(["infer", "--images", str(photos), "--out", str(out), "--format", "colmap",
                 "--format", "glb", *extra]) == 0
    return out


@pytest.mark.parametrize("variant", ["fp32", "w4a16"])
def test_torch_and_ort_agree_on_real_photos(tmp_path, shared_photos, variant):
    result, torch_args = export_and_torch_args(variant, tmp_path)
    # pad mode: both backends see the same 56x56 inputs (in crop mode PyTorch would run these
    # landscape photos at 42x56, while the exported file's input is fixed at 56x56)
    common = ["--conf-percentile", "0", "--mode", "pad"]
    a = infer(tmp_path / "torch", shared_photos, "--backend", "torch", *common, *torch_args)
    b = infer(tmp_path / "ort", shared_photos, "--backend", "ort", *common, "--model", str(result.path))
    # each photo -> 56x42 (the short side rounded to whole 14 px patches as VGGT does), padded to
    # 56x56: the points are the photo pixels only
    assert_same_folder(a, b, NAMES, n_points=3 * 56 * 42)


@pytest.fixture(scope="module")
def ort_folder(tmp_path_factory, shared_photos):
    out = tmp_path_factory.mktemp("ort") / "out"
    return infer(out, shared_photos, "--backend", "ort", "--model", str(get_export("w4a16")[0].path))


def test_colmap_model_reads_back_and_points_lie_on_the_depth(ort_folder):
    from PIL import Image

    pycolmap = pytest.importorskip("pycolmap", reason="pycolmap reads the model back (pip install pycolmap)")
    doc = json.loads((ort_folder / "cameras.json").read_text())
    rec = pycolmap.Reconstruction()
    rec.read_text(str(ort_folder / "sparse"))
    assert rec.num_images() == 3 and rec.num_points3D() == doc["points"] > 0
    seen = 0
    for image_id in sorted(rec.images):
        image = rec.images[image_id]
        frame = doc["frames"][image_id - 1]
        assert image.name == frame["image"] == NAMES[image_id - 1]
        cam = rec.cameras[image.camera_id]
        assert (cam.width, cam.height) == Image.open(SHARED / PICKS[NAMES.index(image.name)]).size
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        np.testing.assert_allclose(np.c_[pose.rotation.matrix(), pose.translation], frame["extrinsic"], atol=1e-5)
        xy = np.stack([p.xy for p in image.points2D])
        xyz = np.stack([rec.points3D[p.point3D_id].xyz for p in image.points2D])
        in_cam = xyz @ pose.rotation.matrix().T + pose.translation
        # float32 points seen at the photo scale (up to 23 photo px per network px): 1/100 px
        np.testing.assert_allclose(np.asarray(cam.img_from_cam(in_cam)), xy, atol=1e-2)
        # photo pixel -> network pixel through the placement, where the depth map was predicted
        place = frame["placement"]
        scale = np.array(place["resized_wh"]) / np.array(place["original_wh"])
        net = np.floor(xy * scale + np.array(place["offset_xy"])).astype(int)
        depth = np.load(ort_folder / "depth" / f"{image_id - 1:03d}_{Path(image.name).stem}.npy")
        np.testing.assert_allclose(in_cam[:, 2], depth[net[:, 1], net[:, 0]], rtol=1e-4)
        seen += len(xy)
    assert seen == doc["points"]


def test_glb_opens_with_every_point_and_one_frustum_per_camera(ort_folder):
    trimesh = pytest.importorskip("trimesh", reason="the GLB writer needs trimesh")
    doc = json.loads((ort_folder / "cameras.json").read_text())
    scene = trimesh.load(ort_folder / "scene.glb")
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    frustums = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    assert sum(len(c.vertices) for c in clouds) == doc["points"]
    assert len(frustums) == len(doc["frames"]) == 3


def test_embedded_tiny_model_on_photos_says_once_it_knows_generated_scenes_only(tmp_path, shared_photos, log_text):
    assert main(["infer", "--images", str(shared_photos), "--max-frames", "1", "--out", str(tmp_path / "o")]) == 0
    assert log_text().count("trained on generated scenes only") == 1
    assert "--preset vggt-1b --checkpoint facebook/VGGT-1B" in log_text()


def test_other_presets_do_not_warn(tmp_path, shared_photos, log_text):
    assert main(["infer", "--preset", "micro", "--images", str(shared_photos), "--max-frames", "1",
                 "--out", str(tmp_path / "o")]) == 0
    assert "generated scenes" not in log_text()


def test_vggt1b_without_weights_is_refused(tmp_path, shared_photos, log_text):
    assert main(["infer", "--preset", "vggt-1b", "--images", str(shared_photos), "--max-frames", "1",
                 "--out", str(tmp_path / "o")]) == 1
    assert "has no embedded weights: pass --checkpoint facebook/VGGT-1B (the official weights)" in log_text()
    assert "--allow-random-weights" in log_text()
    assert not (tmp_path / "o").exists()
