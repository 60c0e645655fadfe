import json

import numpy as np

from qvggt_deploy.cli.main import main
from qvggt_deploy.data.writers import read_ply


def test_infer_on_real_photos(tmp_path, shared):
    out = tmp_path / "out"
    code = main(["infer", "--preset", "micro", "--images", str(shared / "images" / "room" / "images"),
                 "--out", str(out), "--max-frames", "3", "--conf-percentile", "20"])
    assert code == 0
    cams = json.loads((out / "cameras.json").read_text())
    assert len(cams["frames"]) == 3 and cams["image_size_hw"][1] == 56
    assert np.array(cams["frames"][0]["extrinsic"]).shape == (3, 4)
    depth = sorted((out / "depth").glob("*.npy"))
    assert len(depth) == 3 and np.load(depth[0]).shape == tuple(cams["image_size_hw"])
    assert len(list((out / "depth").glob("*.png"))) == 3
    ply = read_ply(out / "points.ply")
    H, W = cams["image_size_hw"]
    assert 0 < len(ply) <= 3 * H * W
    assert set(ply.dtype.names) == {"x", "y", "z", "red", "green", "blue"}


def test_infer_bad_folder_exits_1(tmp_path):
    assert main(["infer", "--preset", "micro", "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
