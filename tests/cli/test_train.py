import json

from qvggt_deploy.cli.main import main
from tests.train.conftest import one_thread  # noqa: F401  (autouse: single-threaded)


def test_train_cli_runs_and_resumes(tmp_path):
    args = ["train", "--preset", "micro", "--steps", "2", "--warmup", "1", "--log-every", "1",
            "--out", str(tmp_path)]
    assert main(args + ["--stop-after", "1"]) == 0
    assert not (tmp_path / "model.safetensors").exists()
    assert main(args) == 0
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["preset"] == "micro"
