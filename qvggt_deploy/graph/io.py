"""The I/O contract shared by the exporter and every backend.

Input ``images``: float32 ``[S, 3, H, W]`` RGB in [0, 1] (one sequence; S = frames, dynamic in
exported graphs; H, W fixed per export, multiples of 14).
Outputs (batch dim 1 kept, as the PyTorch model returns them):

| name | shape |
|---|---|
| ``pose_enc`` | ``[1, S, 9]`` |
| ``depth`` | ``[1, S, H, W, 1]`` |
| ``depth_conf`` | ``[1, S, H, W]`` |
| ``world_points`` | ``[1, S, H, W, 3]`` |
| ``world_points_conf`` | ``[1, S, H, W]`` |
"""
INPUT_NAME = "images"
OUTPUT_NAMES = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
FRAMES_DIM = "frames"
