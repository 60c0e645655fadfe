import pytest
import torch

from qvggt_deploy.data.synthetic import TRAIN_SEED_LIMIT
from qvggt_deploy.train.data import Phase, get_curriculum, make_batch, native_size, phase_at, scene_seed


def test_curriculum_phases_cover_the_run():
    cur = get_curriculum("default")
    assert phase_at(cur, 0, 100) is cur[0] and phase_at(cur, 99, 100) is cur[-1]
    assert native_size(224, 0.5) == 112 and native_size(56, 0.5) == 28


def test_batches_are_a_pure_function_of_seed_and_step():
    phase = Phase(until=1.0, size_scale=0.5, frames=(2, 3), batch=2)
    a, b = make_batch(1, 5, phase, 56), make_batch(1, 5, phase, 56)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["images"].shape[0] == 2 and a["images"].shape[-1] == 28
    assert not torch.equal(a["images"][0], make_batch(1, 6, phase, 56)["images"][0])
    seeds = {scene_seed(s, step, i) for s in range(3) for step in range(50) for i in range(2)}
    assert max(seeds) < TRAIN_SEED_LIMIT and len(seeds) > 290


def test_a_phase_can_restrict_the_trajectory_kind():
    from qvggt_deploy.data.synthetic import SceneConfig, generate_scene

    (phase,) = get_curriculum("random-views")
    assert phase.trajectory == "random"
    batch = make_batch(4, 0, phase, 56)
    frames = batch["images"].shape[1]
    # The batch's first scene is the random-view scene of that seed (frames shuffled).
    scene = generate_scene(scene_seed(4, 0, 0), SceneConfig(frames=frames, image_size=(56, 56), trajectory="random",
                                                            rotation=phase.rotation))
    assert scene.meta["trajectory"] == "random"
    assert sorted(batch["depth"][0].sum(dim=(1, 2)).tolist()) == sorted(scene.depth.sum(dim=(1, 2)).tolist())
    mixed = make_batch(4, 0, Phase(until=1.0, frames=(frames,), rotation=phase.rotation), 56)
    assert not torch.equal(mixed["depth"][0].sum(dim=(1, 2)).sort().values, scene.depth.sum(dim=(1, 2)).sort().values)


def test_worker_processes_render_the_same_batches_in_order():
    from qvggt_deploy.train.data import iterate_batches

    cur = get_curriculum("default")
    inline = list(iterate_batches(2, cur, 10, 56, start=3, end=6, batch=3))
    ahead = list(iterate_batches(2, cur, 10, 56, start=3, end=6, batch=3, workers=2))
    assert len(ahead) == 3 and [b["images"].shape[0] for b in ahead] == [3, 3, 3]
    for a, b in zip(inline, ahead):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_rendering_on_a_gpu_runs_in_the_training_process():
    from qvggt_deploy.errors import QvggtError
    from qvggt_deploy.train.data import iterate_batches

    with pytest.raises(QvggtError, match="no rendering workers"):
        next(iterate_batches(2, get_curriculum("default"), 10, 56, start=0, end=1, workers=1, render_device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_train.py runs it there)")
def test_a_batch_rendered_on_the_gpu_matches_the_cpu_render():
    phase = Phase(until=1.0, frames=(3,), batch=2)
    cpu, gpu = make_batch(3, 1, phase, 112), make_batch(3, 1, phase, 112, device="cuda")
    assert gpu["images"].device.type == "cuda"
    agree = (gpu["mask"].cpu() == cpu["mask"]).float().mean()
    assert agree > 0.999
    close = ((gpu["images"].cpu() - cpu["images"]).abs() < 1e-3).float().mean()
    assert close > 0.99  # a texture lattice cell may flip at float rounding, not whole regions
    torch.testing.assert_close(gpu["extrinsics"].cpu(), cpu["extrinsics"], rtol=1e-5, atol=1e-5)
