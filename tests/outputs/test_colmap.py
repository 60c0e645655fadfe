import numpy as np
import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.outputs.colmap import colmap_images, photo_pixels, write_colmap_text

pycolmap = pytest.importorskip("pycolmap", reason="pycolmap reads the model back (pip install pycolmap)")


def read(folder):
    rec = pycolmap.Reconstruction()
    rec.read_text(str(folder))
    return rec


def test_cameras_and_poses_read_back_exactly(tmp_path, recon):
    points = recon.points("depth", 50)
    write_colmap_text(tmp_path, recon, points)
    rec = read(tmp_path)
    want = colmap_images(recon)
    assert rec.num_images() == 2 and rec.num_cameras() == 2 and rec.num_points3D() == len(points)
    for image_id, im in zip(sorted(rec.images), want):
        image = rec.images[image_id]
        cam = rec.cameras[image.camera_id]
        assert image.name == im.name
        assert cam.model.name == "PINHOLE" and (cam.width, cam.height) == (im.width, im.height)
        assert tuple(cam.params) == im.params  # exact: written with repr
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        xyzw = np.asarray(pose.rotation.quat)
        assert tuple(xyzw[[3, 0, 1, 2]]) == im.qvec and tuple(pose.translation) == im.tvec
        i = want.index(im)
        np.testing.assert_allclose(pose.rotation.matrix(), recon.extrinsics[i][:, :3], atol=1e-6)
        np.testing.assert_allclose(pose.translation, recon.extrinsics[i][:, 3], atol=1e-7)
    # frame 1 is a 90x60 photo shown at 30x20, padded 4 px on top, cropped 2 px on the left:
    # its principal point is VGGT's (W/2, H/2) + 0.5 mapped back to the photo
    assert want[1].params[2:] == pytest.approx(((14 + 0.5 + 2) * 3, (14 + 0.5 - 4) * 3))


def test_points_project_onto_their_pixels_at_the_predicted_depth(tmp_path, recon):
    points = recon.points("depth", 0)
    write_colmap_text(tmp_path, recon, points)
    rec = read(tmp_path)
    assert rec.num_points3D() == int(recon.valid().sum())  # every photo pixel, no padding
    xy = photo_pixels(recon, points)
    for image_id in sorted(rec.images):
        image = rec.images[image_id]
        frame = image_id - 1
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        sel = np.nonzero(points.frame == frame)[0]
        p2d = image.points2D
        assert len(p2d) == len(sel)
        ids = np.array([p.point3D_id for p in p2d])
        xyz = np.stack([rec.points3D[int(k)].xyz for k in ids])
        cam = xyz @ pose.rotation.matrix().T + pose.translation
        np.testing.assert_allclose(cam[:, 2], recon.depth[frame][points.row[sel], points.col[sel]], rtol=1e-5)
        projected = np.asarray(rec.cameras[image.camera_id].img_from_cam(cam))
        np.testing.assert_allclose(projected, xy[sel], atol=1e-3)
        np.testing.assert_allclose(np.stack([p.xy for p in p2d]), xy[sel], atol=1e-5)
        track = rec.points3D[int(ids[5])].track.elements[0]
        assert (track.image_id, track.point2D_idx) == (image_id, 5)


def test_photo_pixels_invert_the_placement(recon):
    points = recon.points("depth", 0)
    xy = photo_pixels(recon, points)
    first = np.nonzero(points.frame == 1)[0][0]  # frame 1's top-left photo pixel in the network
    assert (points.row[first], points.col[first]) == (4, 0)
    # network pixel (col 0, row 4) centre = (0.5, 4.5); minus offset (-2, 4), times 3
    assert tuple(xy[first]) == pytest.approx(((0.5 + 2) * 3, 0.5 * 3))


def test_names_with_spaces_are_refused(tmp_path, recon):
    recon.names[1] = "my photo.jpg"
    with pytest.raises(QvggtError, match="whitespace"):
        write_colmap_text(tmp_path, recon, recon.points())
    assert not list(tmp_path.iterdir())
