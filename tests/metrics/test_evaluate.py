import pytest
import torch

from qvggt_deploy.data.synthetic import SceneConfig, generate_scene
from qvggt_deploy.geometry import extri_intri_to_pose_encoding
from qvggt_deploy.metrics.evaluate import eval_scenes, evaluate_model, mean_metrics

SIZE = (28, 28)


def oracle(scenes):
    """A model callable that returns the ground truth of the scene it is shown."""
    by_image = {s.images.sum().item(): s for s in scenes}

    def run(images):
        s = by_image[images.sum().item()]
        H, W = images.shape[-2:]
        return {"pose_enc": extri_intri_to_pose_encoding(s.extrinsics, s.intrinsics, (H, W))[None],
                "depth": s.depth[None, ..., None], "world_points": s.world_points[None]}

    return run


def test_oracle_is_perfect_and_beats_the_baseline():
    scenes = list(eval_scenes(2, frames=3, image_size=SIZE))
    assert [s.meta["seed"] for s in scenes] == [10 ** 9, 10 ** 9 + 1]
    res = evaluate_model(oracle(scenes), scenes)
    m, b = res["mean"], res["baselines"]["trivial"]["mean"]
    assert res["num_scenes"] == 2 and len(res["per_scene"]) == 2
    assert m["auc@30"] > 99 and m["abs_rel"] < 1e-6 and m["chamfer"] < 1e-3 and m["consistency"] < 1e-3
    assert b["auc@30"] == 0 and b["rte_deg"] == pytest.approx(90) and b["abs_rel"] > 0.05
    assert b["chamfer"] > 10 * m["chamfer"]


def test_mean_skips_nan_and_ids():
    rows = [{"scene": 0, "seed": 5, "a": 1.0, "b": float("nan")}, {"scene": 1, "seed": 6, "a": 3.0}]
    assert mean_metrics(rows)["a"] == 2.0 and "seed" not in mean_metrics(rows)
    assert mean_metrics(rows)["b"] != mean_metrics(rows)["b"]  # NaN when no value


def test_camera_priors_never_look_at_images_and_score_as_documented():
    from qvggt_deploy.metrics.baselines import BASELINES, camera_prior_extrinsics
    from qvggt_deploy.metrics.camera import camera_metrics

    scene = generate_scene(5, SceneConfig(frames=3, image_size=(28, 28)))
    ident = camera_metrics(camera_prior_extrinsics("identity", scene), scene.extrinsics)
    fwd = camera_metrics(camera_prior_extrinsics("forward", scene), scene.extrinsics)
    assert ident["rte_deg"] == pytest.approx(90.0) and ident["auc@30"] == 0
    assert fwd["rre_deg"] == pytest.approx(ident["rre_deg"]) and fwd["rte_deg"] < 90
    dark = generate_scene(5, SceneConfig(frames=3, image_size=(28, 28)))
    dark.images = torch.zeros_like(dark.images)
    for name in ("forward", "mean_trajectory"):
        a, b = BASELINES[name](scene), BASELINES[name](dark)
        assert torch.equal(a["pose_enc"], b["pose_enc"]) and a["pose_enc"].shape == (1, 3, 9)
    mean_traj = camera_prior_extrinsics("mean_trajectory", scene)
    assert torch.allclose(mean_traj[:, :, :3] @ mean_traj[:, :, :3].transpose(1, 2), torch.eye(3).expand(3, 3, 3),
                          atol=1e-5)
