"""Where an ONNX Runtime run's peak memory comes from: RSS over time, matched to the running node.

Loads one exported file, runs it once on random images with ORT's profiler on, samples the
process's anonymous RSS every ``--interval`` seconds in a thread, and prints every moment the
RSS grew by more than ``--step`` GB with the node(s) running then (name, op, output bytes).
This is how the DPT tail was found to set VGGT-1B's W4A16 peak (docs/export.md)::

    python benchmarks/ort_memory_trace.py /tmp/qvggt-vggt1b/vggt1b_w4a16.onnx --frames 2
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_gb() -> dict:
    fields = {}
    for line in open("/proc/self/status"):
        if line.startswith(("RssAnon", "RssFile", "VmHWM")):
            fields[line.split(":")[0]] = int(line.split()[1]) / 1e6
    return fields


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an exported .onnx file")
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.02, help="RSS sampling period, s. Defaults to 0.02.")
    ap.add_argument("--step", type=float, default=0.02, help="report growth above this, GB. Defaults to 0.02.")
    args = ap.parse_args()
    import onnxruntime as ort

    from qvggt_deploy.backends.onnxrt.loader import DISABLED_OPTIMIZERS
    from qvggt_deploy.graph.metadata import ExportMetadata

    height, width = ExportMetadata.read(args.model).size_hw
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="qvggt-memtrace-")) / "profile")
    print("start", rss_gb())
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))
    print("loaded", rss_gb())
    images = np.random.default_rng(1).random((args.frames, 3, height, width), dtype=np.float32)
    samples, stop = [], []

    def sample():
        while not stop:
            samples.append((time.time(), rss_gb()["RssAnon"]))
            time.sleep(args.interval)

    thread = threading.Thread(target=sample)
    thread.start()
    t_run = time.time()
    sess.run(None, {"images": images})
    stop.append(True)
    thread.join()
    print("ran", rss_gb())
    profile = json.loads(Path(sess.end_profiling()).read_text())
    nodes = [e for e in profile if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    run_start = [e for e in profile if e.get("name") == "model_run"][-1]["ts"]  # us since session start
    high = 0.0
    for t, anon in samples:
        if anon <= high + args.step:
            continue
        ts = (t - t_run) * 1e6 + run_start
        running = [n for n in nodes if n["ts"] <= ts <= n["ts"] + n["dur"] + args.interval * 1e6]
        names = ", ".join(f"{n['name'][:-12]} ({n['args'].get('op_name')}, {int(n['args'].get('output_size', 0)) / 1e6:.0f} MB)"
                          for n in running[-2:])
        print(f"{t - t_run:7.2f} s  anon RSS {anon:6.3f} GB  {names}")
        high = anon
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
