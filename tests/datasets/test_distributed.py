"""``torchrun --nproc_per_node 2 ... eval --dataset``: sequences shared between two gloo processes
on the CPU, merged by rank 0 into the same table as one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from qvggt_deploy.cli.main import main
from tests.conftest import REPO
from tests.datasets.test_evaluate import MICRO, co3d_root  # noqa: F401  (fixture)
from tests.train.conftest import one_thread  # noqa: F401  (autouse: single-threaded)


def test_two_gloo_processes_give_the_single_process_table(tmp_path, co3d_root):  # noqa: F811
    args = ["eval", "--dataset", "co3d", "--root", str(co3d_root), "--num-frames", "4", *MICRO, "--threads", "1"]
    single = tmp_path / "single"
    assert main([*args, "--out", str(single)]) == 0
    multi = tmp_path / "multi"
    env = dict(os.environ, QVGGT_NO_PROGRESS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "qvggt_deploy", *args, "--out", str(multi)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    a = json.loads((single / "results.json").read_text())
    b = json.loads((multi / "results.json").read_text())
    # the two ranks did the work: sequences 0 and 2 on rank 0, sequence 1 on rank 1
    assert len((multi / "rows" / "rank0.jsonl").read_text().splitlines()) == 2
    assert len((multi / "rows" / "rank1.jsonl").read_text().splitlines()) == 1
    assert b["settings"]["processes"] == 2
    assert a["mean"] == b["mean"] and a["per_category"] == b["per_category"]
    assert (single / "results.md").read_text().split("\n", 1)[1] == (multi / "results.md").read_text().split("\n", 1)[1]
    assert res.stdout.count("**mean**") == 1  # only rank 0 prints the table
