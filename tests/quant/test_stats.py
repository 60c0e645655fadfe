"""Activation statistics pass: what it measures equals what calibration computes from the same
rows, and two gloo processes sharing the scenes give the single-process statistics."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from qvggt_deploy.quant.stats import collect_statistics, comp_from_moments
from qvggt_deploy.quant.stream import CalibStream
from qvggt_deploy.quant.tokens import compensation_rows, split_rows
from tests.conftest import REPO

# Sums are float64 in both runs but added in another order; the float32 results agree to
# rounding of the last bits (counts and maxima exactly).
RTOL, ATOL = 1e-5, 1e-6


def _scenes(n=3):
    from qvggt_deploy.data.calib import SYNTHETIC, calibration_batches

    return [b.unsqueeze(0) for b in calibration_batches(SYNTHETIC, n, 2, 56, 0, patch=14)]


def _same_comp(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    """Compensation rows up to the sign of each direction (rows 2j+1 and 2j+2 swap)."""
    assert a.shape == b.shape
    if a.shape[0] == 0:
        return
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=atol)
    for j in range(1, a.shape[0], 2):
        pair_a, pair_b = a[j:j + 2], b[j:j + 2]
        direct = (pair_a - pair_b).abs().max()
        swapped = (pair_a - pair_b.flip(0)).abs().max()
        assert min(direct, swapped) <= atol, (j, float(direct), float(swapped))


def test_comp_from_merged_moments_equals_the_svd_of_the_rows():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(300, 16, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, 16, dtype=torch.float64)
    rows += 5
    parts = rows[:120], rows[120:]
    s1 = sum(p.sum(0) for p in parts)
    s2 = sum(p.T @ p for p in parts)
    _same_comp(comp_from_moments(torch.tensor(300.0, dtype=torch.float64), s1, s2, 2),
               compensation_rows(rows, 2), atol=1e-9)


def test_statistics_are_those_of_the_calibration_rows(micro):
    scenes = _scenes(2)
    stats = collect_statistics(micro, scenes)
    # first ViT block's qkv: its inputs are the stream's first block input through norm1
    stream = CalibStream(micro, scenes)
    unit = stream.units[0]
    block = micro.get_submodule(unit.name)
    name = f"{unit.name}.attn.qkv"
    xs = [block.norm1(i.x) for i in stream.unit_inputs(unit)]
    layout = [(i.tokens_per_frame, i.num_special) for i in stream.unit_inputs(unit)]
    kept = torch.cat([split_rows(x, *lay)[0] for x, lay in zip(xs, layout)])
    special = torch.cat([split_rows(x, *lay)[1] for x, lay in zip(xs, layout)])
    s = stats[name]
    assert int(s["count"]) == kept.shape[0] and int(s["special_count"]) == special.shape[0] > 0
    torch.testing.assert_close(s["abs_mean"], kept.abs().mean(0), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s["absmax"], kept.abs().amax(0), rtol=0, atol=0)
    _same_comp(s["comp"], compensation_rows(special, 2), atol=1e-4)
    # every candidate Linear has statistics; camera-head Linears outside blocks have no special rows
    from qvggt_deploy.quant.targets import candidate_linears

    assert set(stats) == set(candidate_linears(micro))
    assert stats["camera_head.pose_branch.fc1"]["comp"].shape[0] == 0


def _rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from qvggt_deploy.model import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        stats = collect_statistics(build_model("micro", seed=0), _scenes(3), rank=rank, world_size=world)
        torch.save(stats, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_statistics(micro, tmp_path):
    single = collect_statistics(micro, _scenes(3))
    out = str(tmp_path / "stats")
    mp.spawn(_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", out), nprocs=2, join=True)
    for rank in range(2):  # every rank holds the merged statistics
        multi = torch.load(f"{out}.{rank}")
        assert set(multi) == set(single)
        for name, s in single.items():
            m = multi[name]
            assert float(m["count"]) == float(s["count"]) and float(m["special_count"]) == float(s["special_count"])
            torch.testing.assert_close(m["absmax"], s["absmax"], rtol=0, atol=0)
            torch.testing.assert_close(m["abs_mean"], s["abs_mean"], rtol=RTOL, atol=ATOL)
            _same_comp(m["comp"], s["comp"], atol=1e-4)


@pytest.mark.slow
def test_torchrun_calibrate_stats_equals_one_process(tmp_path):
    from safetensors.torch import load_file

    from qvggt_deploy.cli.main import main

    args = ["calibrate", "--preset", "micro", "--synthetic", "3", "--frames", "2", "--image-size", "56",
            "--threads", "1"]
    assert main([*args, "--stats", str(tmp_path / "one.safetensors")]) == 0
    env = dict(os.environ, QVGGT_NO_PROGRESS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "qvggt_deploy", *args, "--stats", str(tmp_path / "two.safetensors")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert set(one) == set(two)
    for key in one:
        if key.endswith(".comp"):
            _same_comp(two[key], one[key], atol=1e-4)
        else:
            torch.testing.assert_close(two[key], one[key], rtol=RTOL, atol=ATOL)


def test_calibrate_stats_cli_writes_and_refuses(tmp_path, capsys, caplog, monkeypatch):
    from safetensors import safe_open

    from qvggt_deploy.cli.main import main

    def said() -> str:
        return capsys.readouterr().err + caplog.text

    args = ["calibrate", "--preset", "micro", "--method", "qvggt", "--synthetic", "2", "--frames", "2",
            "--image-size", "56", "--threads", "1"]  # qvggt: the token rule's statistics (comp keys)
    assert main(args) == 2  # usage errors: one of --out and --stats, not both
    assert "--out" in said()
    assert main([*args, "--stats", str(tmp_path / "s.safetensors"), "--out", str(tmp_path / "r")]) == 2
    assert "not allowed with" in said()
    foreign = tmp_path / "notes.safetensors"
    foreign.write_text("mine")
    assert main([*args, "--stats", str(foreign)]) == 1
    assert foreign.read_text() == "mine"
    path = tmp_path / "s.safetensors"
    for _ in range(2):  # the second run replaces its own file
        assert main([*args, "--stats", str(path)]) == 0
    with safe_open(str(path), "pt") as f:
        meta, keys = f.metadata(), set(f.keys())
    assert meta["processes"] == "1" and meta["scenes"] == "2" and meta["token_filter"] == "True"
    assert "aggregator.frame_blocks.0.attn.qkv.comp" in keys and not (tmp_path / "r").exists()
    # under torchrun, N processes calibrating into one folder would clash: refused before any work
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main([*args, "--out", str(tmp_path / "r")]) == 1
    assert "only --stats" in said() and not (tmp_path / "r").exists()
