"""`pydarknet detect` over a directory of 10,000 images: resident memory stays flat and bad images are
reported without stopping.

    python benchmarks/detect_memory.py [--images 10000]

Writes small PNGs (and a few broken files) to a temp dir, runs the CLI on the directory with --json
--no-draw, samples the process's VmRSS from /proc while it runs, and prints RSS by images processed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from subprocess import PIPE, Popen

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--broken", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.images):
            cv2.imwrite(str(folder / f"{i:06d}.png"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        for i in range(args.broken):
            (folder / f"{i:06d}_broken.jpg").write_bytes(b"not an image")
        fx = ROOT / "tests" / "fixtures" / "mini_tiny"
        cmd = [sys.executable, "-m", "pydarknet", "detect", str(fx / "net.cfg"), str(fx / "net.weights"),
               str(folder), "--json", "--no-draw", "--names", str(ROOT / "data" / "voc.names")]
        start = time.time()
        proc = Popen(cmd, stdout=PIPE, stderr=PIPE, text=True)
        samples: list[tuple[int, float]] = []
        done = 0
        for _ in proc.stdout:
            done += 1
            if done % 500 == 0:
                samples.append((done, rss_mb(proc.pid)))
        errors = proc.stderr.read().strip().splitlines()
        proc.wait()
        wall = time.time() - start
    print(f"{args.images} images + {args.broken} broken, mini_tiny 96x96, exit status {proc.returncode}, "
          f"{wall:.1f} s ({args.images / wall:.0f} images/s)")
    print(f"error lines: {len(errors)} (first: {errors[0] if errors else '-'})")
    print("images  RSS MB")
    for n, mb in samples:
        print(f"{n:6d}  {mb:7.1f}")
    first, last = samples[1][1], samples[-1][1]  # after warm-up
    print(f"growth from {samples[1][0]} to {samples[-1][0]} images: {last - first:+.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
