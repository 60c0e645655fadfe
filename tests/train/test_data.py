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
