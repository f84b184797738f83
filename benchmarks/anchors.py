"""k-means anchors (1 - IoU) on 1,000,000 boxes: `pydarknet.anchors.kmeans_anchors` and two peers.

    python benchmarks/anchors.py [--boxes 1000000] [--k 5 9] [--runs 3] [--loop-sample 20000]

Data: seeded synthetic box sizes, a mixture of 12 log-normal clusters (sigma .35) of relative w, h
clipped to [1/416, 1], so the clusters overlap as real label sets do. Every method starts from the same
k-means++ centres (seed 0) and runs Lloyd's iterations to convergence (no box changes cluster).

- pydarknet: vectorized numpy with Hamerly's bounds (late iterations measure only the boxes that may move);
  median wall time of --runs runs, with its CPU time (the machine may be shared).
- numpy Lloyd: the textbook vectorized version, every (N, K) distance recomputed each iteration (one run).
- per-box loop: AlexeyAB/gen_anchors.py style pure-Python loop (for each box, for each anchor: IoU, keep the
  best; then the means), timed on --loop-sample boxes for 2 iterations and extrapolated linearly to N boxes
  x pydarknet's iteration count (a loop over 1e6 boxes would take many minutes per setting).

The peers' assignments are checked against pydarknet's (same anchors to 1e-9; loop assignments identical).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydarknet.anchors import iou_wh, kmeans_anchors, kmeans_pp_init  # noqa: E402


def synthetic_boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.exp(rng.uniform(np.log(0.03), np.log(0.8), (12, 2)))
    wh = centres[rng.integers(0, 12, n)] * np.exp(rng.normal(0, 0.35, (n, 2)))
    return np.clip(wh, 1 / 416, 1.0)


def numpy_lloyd(wh: np.ndarray, centres: np.ndarray, max_iter: int = 1000) -> tuple[np.ndarray, int]:
    assign = None
    for it in range(1, max_iter + 1):
        new = iou_wh(wh[:, None], centres).argmax(1)
        if assign is not None and np.array_equal(new, assign):
            return centres, it
        assign = new
        counts = np.bincount(assign, minlength=len(centres))[:, None]
        centres = np.stack([np.bincount(assign, wh[:, i], len(centres)) for i in (0, 1)], 1) / counts
    return centres, max_iter


def loop_iteration(boxes: list[tuple[float, float]], centres: list[tuple[float, float]]) -> tuple[list, list[int]]:
    """One Lloyd iteration, one box and one anchor at a time."""
    k = len(centres)
    sums, counts, assign = [[0.0, 0.0] for _ in range(k)], [0] * k, []
    for w, h in boxes:
        best, best_iou = 0, -1.0
        for j, (cw, ch) in enumerate(centres):
            inter = min(w, cw) * min(h, ch)
            iou = inter / (w * h + cw * ch - inter)
            if iou > best_iou:
                best, best_iou = j, iou
        assign.append(best)
        sums[best][0] += w
        sums[best][1] += h
        counts[best] += 1
    return [(s[0] / max(c, 1), s[1] / max(c, 1)) for s, c in zip(sums, counts)], assign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, nargs="+", default=[5, 9])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loop-sample", type=int, default=20_000)
    args = parser.parse_args()

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"CPU: {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"python {platform.python_version()}, numpy {np.__version__}")
    wh = synthetic_boxes(args.boxes)
    print(f"{len(wh)} boxes (12 overlapping log-normal clusters), k-means++ seed 0\n")
    print(f"{'K':>3} {'iters':>5} {'mean IoU':>8} {'pydarknet s':>11} {'(cpu s)':>8} {'numpy Lloyd s':>13} "
          f"{'ratio':>6} {'loop s (extrap.)':>16} {'ratio':>7}")
    for k in args.k:
        walls, cpus = [], []
        for _ in range(args.runs):
            t, c = time.perf_counter(), time.process_time()
            result = kmeans_anchors(wh, k, seed=0)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        ours = statistics.median(walls)

        init = kmeans_pp_init(wh, k, np.random.default_rng(0))
        t = time.perf_counter()
        centres, lloyd_iters = numpy_lloyd(wh, init)
        lloyd = time.perf_counter() - t
        order = np.argsort(centres[:, 0] * centres[:, 1])
        assert lloyd_iters == result.iterations and np.allclose(centres[order], result.anchors, rtol=1e-9, atol=0)

        sample = wh[np.random.default_rng(1).choice(len(wh), args.loop_sample, replace=False)]
        boxes, start = [tuple(b) for b in sample.tolist()], [tuple(c) for c in init.tolist()]
        t = time.perf_counter()
        after_one, first = loop_iteration(boxes, start)
        loop_iteration(boxes, after_one)
        per_box_iter = (time.perf_counter() - t) / (2 * len(boxes))
        assert np.array_equal(first, iou_wh(sample[:, None], init).argmax(1))
        loop = per_box_iter * len(wh) * result.iterations
        print(f"{k:>3} {result.iterations:>5} {result.mean_iou:>8.4f} {ours:>11.2f} {statistics.median(cpus):>8.2f} "
              f"{lloyd:>13.2f} {lloyd / ours:>5.1f}x {loop:>16.0f} {loop / ours:>6.0f}x")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; pydarknet: median of {args.runs} runs; "
          f"loop: {args.loop_sample} boxes x 2 iterations extrapolated")


if __name__ == "__main__":
    main()
