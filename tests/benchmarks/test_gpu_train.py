import pytest
import torch
from safetensors.torch import load_file

from qvggt_deploy.model.checkpoint import default_checkpoint
from tests.benchmarks.scripts import load_benchmark

gpu_train = load_benchmark("gpu_train")


def test_shards_fit_a_device_reply_and_join_back_to_the_same_weights(tmp_path):
    asset = default_checkpoint("tiny")
    sizes = gpu_train.split_checkpoint(asset, tmp_path)
    assert max(sizes) < 16 * 2 ** 20 and abs(sizes[0] - sizes[1]) < 0.1 * sum(sizes)
    for name in gpu_train.SHARDS:
        assert (tmp_path / name).stat().st_size < 16 * 2 ** 20
    joined = gpu_train.join_checkpoint(tmp_path, tmp_path / "model.safetensors")
    original, back = load_file(str(asset)), load_file(str(joined))
    assert original.keys() == back.keys() and all(torch.equal(original[k], back[k]) for k in original)


def test_join_refuses_shards_that_do_not_make_the_model(tmp_path):
    from safetensors.torch import save_file

    gpu_train.split_checkpoint(default_checkpoint("tiny"), tmp_path)
    part = load_file(str(tmp_path / gpu_train.SHARDS[1]))
    part.pop(next(iter(part)))
    save_file(part, str(tmp_path / gpu_train.SHARDS[1]))
    with pytest.raises(Exception, match="missing|Missing"):
        gpu_train.join_checkpoint(tmp_path, tmp_path / "model.safetensors")
    assert [p.name for p in tmp_path.iterdir() if "model.safetensors" in p.name] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_train_without_cuda_exits_2_and_writes_nothing(tmp_path):
    assert gpu_train.main(["train", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
