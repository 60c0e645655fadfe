"""Writers of small fixture folders in the official on-disk layouts (the inverse of each reader's
conversions, written independently from the documented formats), and random test cameras."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

FLIP = np.diag([-1.0, -1.0, 1.0])


def random_cameras(n: int, rng: np.random.Generator, width: int, height: int):
    """n cameras looking roughly at the origin from ~3 units: (E [n,3,4] OpenCV camera-from-world, K [n,3,3])."""
    Es, Ks = [], []
    for _ in range(n):
        centre = rng.normal(size=3)
        centre = 3 * centre / np.linalg.norm(centre)
        z = -centre / np.linalg.norm(centre)
        x = np.cross(z, rng.normal(size=3))
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])  # rows: camera axes in world
        Es.append(np.concatenate([R, (-R @ centre)[:, None]], axis=1))
        f = rng.uniform(0.8, 1.2) * width
        Ks.append(np.array([[f, 0, (width - 1) / 2 + rng.uniform(-2, 2)], [0, f * rng.uniform(0.95, 1.05),
                                                                           (height - 1) / 2], [0, 0, 1]]))
    return np.stack(Es), np.stack(Ks)


def noise_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


def _jgz(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(obj, f)


# ---- CO3Dv2 --------------------------------------------------------------------------------
def write_co3d(root: Path, category: str, sequences: Dict[str, dict], train: Sequence[str] = ()) -> None:
    """``sequences[name] = {"E", "K", "size" (W, H), "quality", "images" (optional PIL list)}``;
    every frame goes to the ``test`` list of set_lists_fewview_dev.json (names in ``train`` to
    ``train``). Cameras are written as PyTorch3D R, T with ndc_isotropic intrinsics."""
    rng = np.random.default_rng(0)
    frames, seqs, lists = [], [], {"train": [], "val": [], "test": []}
    for name, s in sequences.items():
        W, H = s["size"]
        seqs.append({"sequence_name": name, "category": category, "video": {"path": f"{category}/{name}/video.mp4",
                                                                           "length": 1.0},
                     "viewpoint_quality_score": s.get("quality", 1.0)})
        for i, (E, K) in enumerate(zip(s["E"], s["K"])):
            number = i + 1
            rel = f"{category}/{name}/images/frame{number:06d}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            image = s["images"][i] if "images" in s else noise_image(rng, W, H)
            image.save(root / rel)
            R_cv, t_cv = E[:, :3], E[:, 3]
            scale = min(W, H) / 2
            viewpoint = {"R": (FLIP @ R_cv).T.tolist(), "T": (FLIP @ t_cv).tolist(),
                         "focal_length": [K[0, 0] / scale, K[1, 1] / scale],
                         "principal_point": [-(K[0, 2] + 0.5 - W / 2) / scale, -(K[1, 2] + 0.5 - H / 2) / scale],
                         "intrinsics_format": "ndc_isotropic"}
            frames.append({"sequence_name": name, "frame_number": number, "frame_timestamp": number / 30,
                           "image": {"path": rel, "size": [H, W]}, "viewpoint": viewpoint,
                           "meta": {"frame_type": "test_unseen"}})
            lists["train" if name in train else "test"].append([name, number, rel])
    _jgz(root / category / "frame_annotations.jgz", frames)
    _jgz(root / category / "sequence_annotations.jgz", seqs)
    (root / category / "set_lists").mkdir(parents=True, exist_ok=True)
    (root / category / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(lists))


# ---- RealEstate10K -------------------------------------------------------------------------
def write_re10k(root: Path, name: str, E: np.ndarray, K: np.ndarray, size, images: Optional[List] = None,
                missing: Sequence[int] = ()) -> List[str]:
    """One sequence: ROOT/test/<name>.txt and ROOT/frames/test/<name>/<timestamp>.png (frames in
    ``missing`` get a camera line but no image). Returns the timestamps."""
    W, H = size
    rng = np.random.default_rng(1)
    (root / "test").mkdir(parents=True, exist_ok=True)
    (root / "frames" / "test" / name).mkdir(parents=True, exist_ok=True)
    lines = [f"https://www.youtube.com/watch?v={name}"]
    stamps = []
    for i, (e, k) in enumerate(zip(E, K)):
        stamp = str(1000000 + 33366 * i)
        stamps.append(stamp)
        intr = [k[0, 0] / W, k[1, 1] / H, (k[0, 2] + 0.5) / W, (k[1, 2] + 0.5) / H]
        lines.append(" ".join([stamp] + [repr(float(v)) for v in intr] + ["0", "0"] +
                              [repr(float(v)) for v in e.reshape(-1)]))
        if i not in missing:
            (images[i] if images else noise_image(rng, W, H)).save(root / "frames" / "test" / name / f"{stamp}.png")
    (root / "test" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return stamps


# ---- DTU (MVSNet training layout) ----------------------------------------------------------
def write_pfm(path: Path, image: np.ndarray) -> None:
    image = np.asarray(image, dtype="<f4")
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1.0\n" % (image.shape[1], image.shape[0]))
        f.write(image[::-1].tobytes())  # bottom row first


def write_dtu(root: Path, scan: int, E: np.ndarray, K_depth: np.ndarray, depths: np.ndarray, images: List,
              light: int = 3) -> None:
    """Views 0..n-1 of scan ``scan``: cameras (K for the depth-map resolution), images, PFM depths."""
    (root / "Cameras").mkdir(parents=True, exist_ok=True)
    (root / "Rectified" / f"scan{scan}_train").mkdir(parents=True, exist_ok=True)
    (root / "Depths" / f"scan{scan}_train").mkdir(parents=True, exist_ok=True)
    for v, (e, k, d, im) in enumerate(zip(E, K_depth, depths, images)):
        E4 = np.vstack([e, [0, 0, 0, 1]])
        text = "extrinsic\n" + "\n".join(" ".join(repr(float(x)) for x in row) for row in E4)
        text += "\n\nintrinsic\n" + "\n".join(" ".join(repr(float(x)) for x in row) for row in k)
        text += "\n\n425.0 2.5\n"
        (root / "Cameras" / f"{v:08d}_cam.txt").write_text(text)
        im.save(root / "Rectified" / f"scan{scan}_train" / f"rect_{v + 1:03d}_{light}_r5000.png")
        write_pfm(root / "Depths" / f"scan{scan}_train" / f"depth_map_{v:04d}.pfm", d)


# ---- ETH3D ---------------------------------------------------------------------------------
def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> (qw, qx, qy, qz), via the eigenvector of the symmetric 4x4 (Bar-Itzhack)."""
    Rxx, Ryx, Rzx, Rxy, Ryy, Rzy, Rxz, Ryz, Rzz = R.flat
    Kmat = np.array([[Rxx - Ryy - Rzz, 0, 0, 0], [Ryx + Rxy, Ryy - Rxx - Rzz, 0, 0],
                     [Rzx + Rxz, Rzy + Ryz, Rzz - Rxx - Ryy, 0], [Ryz - Rzy, Rzx - Rxz, Rxy - Ryx, Rxx + Ryy + Rzz]]) / 3
    vals, vecs = np.linalg.eigh(Kmat)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


def write_eth3d(root: Path, scene: str, E: np.ndarray, K: np.ndarray, depths: np.ndarray, images: List,
                masks: Optional[List[np.ndarray]] = None) -> List[str]:
    """One scene: COLMAP text model (one PINHOLE camera per image), JPG-named PNG images, raw
    float32 depth (inf where 0), optional occlusion masks. Returns the image names."""
    folder = root / scene
    calib = folder / "dslr_calibration_undistorted"
    for sub in (calib, folder / "images" / "dslr_images_undistorted", folder / "ground_truth_depth" / "dslr_images"):
        sub.mkdir(parents=True, exist_ok=True)
    cams, imgs, names = ["# Camera list"], ["# Image list"], []
    for i, (e, k, d, im) in enumerate(zip(E, K, depths, images)):
        H, W = d.shape
        params = [float(k[0, 0]), float(k[1, 1]), float(k[0, 2]) + 0.5, float(k[1, 2]) + 0.5]
        cams.append(f"{i + 1} PINHOLE {W} {H} " + " ".join(repr(p) for p in params))
        q = rotmat_to_qvec(e[:, :3])
        name = f"dslr_images_undistorted/DSC_{i:04d}.JPG"
        names.append(name)
        imgs.append(f"{i + 1} " + " ".join(repr(float(v)) for v in [*q, *e[:, 3]]) + f" {i + 1} {name}")
        imgs.append("")  # no 2D points
        im.save(folder / "images" / name, format="PNG")  # the reader opens by content, not suffix
        raw = np.where(d > 0, d, np.inf).astype("<f4")
        raw.tofile(folder / "ground_truth_depth" / "dslr_images" / f"DSC_{i:04d}.JPG")
        if masks is not None:
            (folder / "masks_for_images" / "dslr_images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(masks[i].astype(np.uint8)).save(folder / "masks_for_images" / "dslr_images" /
                                                            f"DSC_{i:04d}.png")
    (calib / "cameras.txt").write_text("\n".join(cams) + "\n")
    (calib / "images.txt").write_text("\n".join(imgs) + "\n")
    (calib / "points3D.txt").write_text("# 3D point list\n")
    return names


def export_scene_eth3d(scene_dir: Path, root: Path) -> str:
    """A saved generated scene (``qvggt scenes``) written as an ETH3D scene of the same name."""
    from qvggt_deploy.data.scene_io import read_scene

    scene = read_scene(scene_dir)
    rgb = (scene.images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    write_eth3d(root, scene_dir.name, scene.extrinsics.double().numpy(), scene.intrinsics.double().numpy(),
                scene.depth.numpy(), [Image.fromarray(x) for x in rgb])
    return scene_dir.name
