"""A small synthetic reconstruction with known cameras, padding and a crop (no model needed)."""
import numpy as np
import pytest
import torch

from qvggt_deploy.data.images import Placement
from qvggt_deploy.outputs.reconstruction import Reconstruction

H, W = 28, 28


@pytest.fixture()
def recon():
    rng = np.random.default_rng(3)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    pose_enc = np.array([[0, 0, 0, 0, 0, 0, 1, 1.0, 1.0],
                         [0.1, -0.2, 0.05, *q, 0.9, 1.1]], dtype=np.float32)
    outputs = {
        "pose_enc": pose_enc[None],
        "depth": rng.uniform(1, 3, (1, 2, H, W, 1)).astype(np.float32),
        "depth_conf": rng.uniform(1, 5, (1, 2, H, W)).astype(np.float32),
        "world_points": rng.normal(size=(1, 2, H, W, 3)).astype(np.float32),
        "world_points_conf": rng.uniform(1, 5, (1, 2, H, W)).astype(np.float32),
    }
    images = torch.from_numpy(rng.uniform(0, 1, (2, 3, H, W)).astype(np.float32))
    # frame 0: a square photo resized to fill the input; frame 1: a 4:3 photo padded top/bottom,
    # frame 1 also cropped 2 px on the left (left = -2) to exercise both offsets.
    placements = [Placement((64, 64), (28, 28)), Placement((90, 60), (30, 20), left=-2, top=4)]
    return Reconstruction.from_outputs(outputs, images, ["a.png", "b_photo.jpg"], placements)
