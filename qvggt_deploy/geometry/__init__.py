"""Camera geometry in VGGT's conventions: OpenCV camera axes (x right, y down, z forward),
extrinsics camera-from-world ``[R | t]`` (3x4), the first camera's frame as the world frame,
quaternions scalar-last (XYZW)."""
from qvggt_deploy.geometry.pose_enc import extri_intri_to_pose_encoding, pose_encoding_to_extri_intri
from qvggt_deploy.geometry.rotation import mat_to_quat, quat_to_mat
from qvggt_deploy.geometry.unproject import (closed_form_inverse_se3, depth_to_camera_points,
                                             unproject_depth_map_to_point_map)

__all__ = ["extri_intri_to_pose_encoding", "pose_encoding_to_extri_intri", "mat_to_quat", "quat_to_mat",
           "closed_form_inverse_se3", "depth_to_camera_points", "unproject_depth_map_to_point_map"]
