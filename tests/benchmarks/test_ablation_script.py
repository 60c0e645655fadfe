"""benchmarks/ablation.py: the real run's arguments and the cost it prints before starting."""
from tests.benchmarks.scripts import load_benchmark


def load():
    return load_benchmark("ablation", "ablation_script")


def test_defaults_overridable_and_cost_printed():
    m = load()
    argv = m._argv([])
    assert argv[argv.index("--eval-scenes") + 1] == "256" and argv[argv.index("--group") + 1] == "128"
    assert argv[argv.index("--out") + 1].endswith("benchmarks/results/ablation_tiny")
    short = m._argv(["--eval-scenes", "4", "--calib", "somewhere"])
    assert short.count("--eval-scenes") == 1 and "--synthetic" not in short
    text = m.describe(argv)
    assert "22 rows" in text and "36 evaluations of 256 scenes" in text and " h " in text and "tiny" in text
    sub = m.describe(m._argv(["--settings", "w4", "--rows", "fp32,awq"]))
    assert "2 rows (fp32, w4g128/awq)" in sub and "3 evaluations" in sub
