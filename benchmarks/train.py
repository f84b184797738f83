"""Training throughput on this CPU, data loading included, and the share of time spent waiting on data.

    python benchmarks/train.py [--batches N] [--workers 0,2] [--rows shapes,tiny-yolo-voc]

Each row runs `pydarknet detector train` (a fresh process, random init, synthetic shapes images written by
the benchmark at the cfg's input size) for a number of updates (per row, or `--batches`) and reads the
loop's closing line: images/s and the share of wall time the step waited for the DataLoader. Peers measured
in the same run: the same cfg's inference images/s (eval mode, no grad, same batch) and the same training
with other worker counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import pydarknet
from pydarknet.data.synthetic import make_shapes_dataset

ROOT = Path(__file__).resolve().parent.parent
# row -> (cfg, images per update: the cfg's batch is set to it (subdivisions 1), updates per run)
ROWS = {"shapes": ("cfg/shapes.cfg", 32, 60), "tiny-yolo-voc": ("cfg/yolov2-tiny-voc.cfg", 8, 12)}


def _cfg_with_batch(src: Path, batch: int, out: Path) -> Path:
    text = re.sub(r"^batch\s*=.*$", f"batch={batch}", src.read_text(), count=1, flags=re.M)
    out.write_text(re.sub(r"^subdivisions\s*=.*$", "subdivisions=1", text, count=1, flags=re.M))
    return out


def _train(data: Path, cfg: Path, batches: int, workers: int) -> tuple[float, float]:
    """(images/s, share of time waiting on data) from the loop's closing line."""
    cmd = [sys.executable, "-m", "pydarknet", "detector", "train", str(data), str(cfg), "--max-batches",
           str(batches), "--workers", str(workers)]
    err = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    m = re.search(r"([\d.]+) images/s, waiting on data ([\d.]+)% of the time", err)
    if m is None:
        raise SystemExit(f"no summary line in:\n{err[-2000:]}")
    return float(m.group(1)), float(m.group(2)) / 100


@torch.no_grad()
def _infer(cfg: Path, batch: int, reps: int = 5) -> float:
    net = pydarknet.load(cfg)
    x = torch.rand(batch, 3, net.config.height, net.config.width)
    net(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t)
    return batch / sorted(times)[len(times) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=None, help="updates per training run (default: per row)")
    ap.add_argument("--workers", default="0,2", help="loader worker counts to compare")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--images", type=int, default=300, help="synthetic training images per row")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"{'row':14s} {'batch':>5s} {'input':>5s} {'updates':>7s} {'infer img/s':>11s} " +
          " ".join(f"{f'train w={w} img/s':>16s} {'data wait':>9s}" for w in workers) + "  train/infer")
    with tempfile.TemporaryDirectory(prefix="pydarknet-bench-train-") as tmp:
        for row in args.rows.split(","):
            src, batch, updates = ROWS[row]
            updates = args.batches or updates
            cfg = _cfg_with_batch(ROOT / src, batch, Path(tmp) / f"{row}.cfg")
            size = pydarknet.load(cfg).config.width
            data = make_shapes_dataset(Path(tmp) / f"data-{row}", n_train=args.images, n_valid=1,
                                       size=(size, size), seed=1)
            infer = _infer(cfg, batch)
            results = [_train(data, cfg, updates, w) for w in workers]
            cells = " ".join(f"{ips:16.1f} {wait:9.1%}" for ips, wait in results)
            print(f"{row:14s} {batch:5d} {size:5d} {updates:7d} {infer:11.1f} {cells}  {results[-1][0] / infer:11.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
