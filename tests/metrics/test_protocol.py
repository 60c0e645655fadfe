"""Protocol check: the metric functions on fixed arrays give the numbers of the official
formulas, reimplemented here independently in plain numpy.

Official sources: facebookresearch/vggt ``evaluation/test_co3d.py`` (``rotation_angle``,
``compare_translation_by_angle``, ``translation_angle``, ``calculate_auc_np``,
``se3_to_relative_pose_error``: pairs ``torch.combinations`` i < j, relative pose
``E_i inv(E_j)``, category AUC over the pooled pairs, mean over categories), and
``evaluation/pointcloud.py`` with its ``mv_recon`` helpers (Umeyama, then accuracy = mean distance
from each predicted point to the nearest ground-truth point, completeness the other way round);
the DTU outlier cut-off as the DTU evaluation (``d[d < max_dist].mean()``, 20 mm).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from qvggt_deploy.metrics.camera import auc, camera_metrics, camera_metrics_from_errors, relative_pose_errors
from qvggt_deploy.metrics.points import point_metrics


def _rot(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _poses(rng, n, noise=0.0, gt=None):
    out = []
    for i in range(n):
        if gt is None:
            R, t = _rot(rng), rng.normal(size=3)
        else:
            axis = rng.normal(size=3)
            axis *= noise * np.pi / 180 / np.linalg.norm(axis)
            K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            small = np.eye(3) + np.sin(np.linalg.norm(axis)) * K / max(np.linalg.norm(axis), 1e-12) + \
                (1 - np.cos(np.linalg.norm(axis))) * (K @ K) / max(np.linalg.norm(axis), 1e-12) ** 2
            R = small @ gt[i][:, :3]
            t = gt[i][:, 3] * 2.5 + noise * 0.02 * rng.normal(size=3)  # scale-free: x2.5
        out.append(np.concatenate([R, t[:, None]], axis=1))
    return np.stack(out)


def _official_errors(pred, gt):
    """The official per-pair errors, from their formulas (geodesic angle via the trace, which the
    official quaternion form ``arccos(1 - 2(1 - <q, q'>^2))`` equals)."""
    def h(E):
        return np.vstack([E, [0, 0, 0, 1]])

    rre, rte = [], []
    for i, j in itertools.combinations(range(len(gt)), 2):
        rel_p = h(pred[i]) @ np.linalg.inv(h(pred[j]))
        rel_g = h(gt[i]) @ np.linalg.inv(h(gt[j]))
        cos = (np.trace(rel_p[:3, :3].T @ rel_g[:3, :3]) - 1) / 2
        rre.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
        tp = rel_p[:3, 3] / (np.linalg.norm(rel_p[:3, 3]) + 1e-15)
        tg = rel_g[:3, 3] / (np.linalg.norm(rel_g[:3, 3]) + 1e-15)
        loss = max(1 - np.dot(tp, tg) ** 2, 1e-15)
        e = np.degrees(np.arccos(np.sqrt(1 - loss)))
        rte.append(min(e, abs(180 - e)))
    return np.array(rre), np.array(rte)


def _official_auc(rre, rte, tau):
    hist, _ = np.histogram(np.maximum(rre, rte), bins=np.arange(tau + 1))
    return np.mean(np.cumsum(hist / len(rre)))


@pytest.mark.parametrize("noise", [0.5, 4.0, 20.0])
def test_pair_errors_and_auc_match_the_official_formulas(noise):
    rng = np.random.default_rng(int(noise * 10))
    gt = _poses(rng, 10)
    pred = _poses(rng, 10, noise, gt)
    rre, rte = relative_pose_errors(torch.from_numpy(pred), torch.from_numpy(gt))
    assert len(rre) == 45
    ref_r, ref_t = _official_errors(pred, gt)
    # the official 1e-15 clamp puts a floor of ~3.6e-6 degrees under a perfect rotation
    np.testing.assert_allclose(rre.numpy(), ref_r, atol=1e-5)
    np.testing.assert_allclose(rte.numpy(), ref_t, atol=1e-5)
    m = camera_metrics(torch.from_numpy(pred), torch.from_numpy(gt))
    for tau in (30, 15, 5, 3):
        assert m[f"auc@{tau}"] == pytest.approx(100 * _official_auc(ref_r, ref_t, tau), abs=1e-9)
    assert m["rra@15"] == pytest.approx(100 * np.mean(ref_r < 15))
    assert m["rta@5"] == pytest.approx(100 * np.mean(ref_t < 5))


def test_auc_by_hand():
    # max errors 0.5, 1.5, 29.5, 45 -> fractions below t = 1..30: 1/4, then 2/4 (t = 2..29), 3/4 at t = 30
    # (last bin closed; 45 never counts): (0.25 + 28 * 0.5 + 0.75) / 30 = 0.5
    assert auc([0.5, 1.0, 29.5, 45.0], [0.1, 1.5, 3.0, 2.0], 30) == pytest.approx(0.5)
    # AUC@3 of the same pairs: t = 1: 1/4, t = 2, 3: 2/4 -> 5/12
    assert auc([0.5, 1.0, 29.5, 45.0], [0.1, 1.5, 3.0, 2.0], 3) == pytest.approx(5 / 12)
    assert auc([30.0], [0.0], 30) == pytest.approx(1 / 30)  # exactly tau: in the closed last bin


def test_category_auc_pools_pairs_not_sequence_means():
    a = ([0.5] * 45, [0.5] * 45)          # a perfect sequence
    b = ([20.0] * 3, [20.0] * 3)          # a short bad one
    pooled = camera_metrics_from_errors(a[0] + b[0], a[1] + b[1])["auc@30"]
    expected = 100 * (45 * 1.0 + 3 * (10 / 30)) / 48  # per pair: 1 for 0.5 deg; 10/30 for 20 (t = 21..30)
    assert pooled == pytest.approx(expected)
    assert pooled != pytest.approx((100 + 100 * 10 / 30) / 2)


def _umeyama_np(src, dst):
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    c = np.trace(np.diag(D) @ S) / ((src - mu_s) ** 2).sum(1).mean()
    return c, R, mu_d - c * R @ mu_s


def _nn(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(1)


@pytest.mark.parametrize("max_dist", [None, 0.3])
def test_point_metrics_match_umeyama_and_nearest_neighbours(max_dist):
    rng = np.random.default_rng(4)
    gt = rng.normal(size=(2, 6, 7, 3))
    mask = rng.random((2, 6, 7)) > 0.2
    R = _rot(rng)
    pred = (0.3 * gt @ R.T + np.array([1.0, -2.0, 0.5])) + 0.2 * rng.normal(size=gt.shape)
    got = point_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask), max_points=10 ** 4,
                        max_dist=max_dist)
    p, g = pred[mask], gt[mask]
    c, Rm, t = _umeyama_np(p, g)
    aligned = c * p @ Rm.T + t
    acc, comp = _nn(aligned, g), _nn(g, aligned)
    if max_dist is not None:
        assert (acc >= max_dist).any()  # the cut-off matters on these arrays
        acc, comp = acc[acc < max_dist], comp[comp < max_dist]
    assert got["accuracy"] == pytest.approx(acc.mean(), rel=1e-5)
    assert got["completeness"] == pytest.approx(comp.mean(), rel=1e-5)
    assert got["chamfer"] == pytest.approx((acc.mean() + comp.mean()) / 2, rel=1e-5)


def test_similarity_is_recovered_exactly():
    rng = np.random.default_rng(5)
    gt = rng.normal(size=(1, 5, 5, 3))
    pred = (gt - np.array([3.0, 0, 1])) @ _rot(rng).T / 7.0
    got = point_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.ones(1, 5, 5, dtype=torch.bool))
    assert got["accuracy"] < 1e-5 and got["completeness"] < 1e-5
