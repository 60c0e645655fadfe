"""Geometry metrics as VGGT's evaluations: cameras (RRE/RTE, RRA/RTA, AUC), depth (AbsRel,
delta<1.25), point maps (accuracy/completeness/Chamfer after Umeyama), cross-head consistency,
and the evaluation loop over scenes (:func:`evaluate_model`)."""
from qvggt_deploy.metrics.camera import auc, camera_metrics, relative_pose_errors
from qvggt_deploy.metrics.consistency import consistency_metrics
from qvggt_deploy.metrics.depth import depth_metrics
from qvggt_deploy.metrics.evaluate import eval_scenes, evaluate_model, torch_model_fn
from qvggt_deploy.metrics.points import point_metrics, umeyama
from qvggt_deploy.metrics.summary import compute_metrics, higher_is_better

__all__ = ["auc", "camera_metrics", "relative_pose_errors", "consistency_metrics", "depth_metrics",
           "eval_scenes", "evaluate_model", "torch_model_fn", "point_metrics", "umeyama",
           "compute_metrics", "higher_is_better"]
