"""Load time of yolo9000: cfg parse + 195 MB weights, `pydarknet.load(exact=True)` and `pydarknet.load`.

    python benchmarks/load.py [--runs 5]

The weights are random (seeded), written once to /tmp/pydarknet-bench/yolo9000.weights and reused. Each
run is a fresh process (so no file or allocator state carries over inside python; the file stays in the
OS page cache, as it would for a model loaded again). Prints the median and every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "cfg" / "yolo9000.cfg"
CACHE = Path("/tmp/pydarknet-bench")
TARGET_S = 1.0


def weights_file() -> Path:
    """Seeded random yolo9000 weights, written on first use."""
    path = CACHE / "yolo9000.weights"
    if not path.exists():
        import torch

        from pydarknet.network import build_network

        torch.manual_seed(0)  # the build's own Darknet initialisation is the random content
        build_network(CFG).save_weights(path)
    return path


def one_run(exact: bool, weights: Path) -> dict:
    """Seconds of `pydarknet.load` in a fresh process (after `import torch, pydarknet`, timed apart)."""
    code = f"""
import json, time
t0 = time.perf_counter()
import torch
import pydarknet
t1 = time.perf_counter()
net = pydarknet.load({str(CFG)!r}, {str(weights)!r}, exact={exact})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    weights = weights_file()
    print(f"{CFG.name}, {weights} ({weights.stat().st_size / 1e6:.0f} MB); "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}")
    one_run(True, weights)  # warm the page cache
    for exact in (True, False):
        runs = [one_run(exact, weights)["load_s"] for _ in range(args.runs)]
        median = statistics.median(runs)
        verdict = "meets" if median <= TARGET_S else "misses"
        print(f"  load(exact={exact!s:5}): median {median:.3f} s ({verdict} the {TARGET_S:.0f} s target); runs "
              + ", ".join(f"{r:.3f}" for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
