"""Train a shapes detector from scratch with `pydarknet detector train`; record mAP@.5 vs minutes.

    python benchmarks/train_shapes.py --minutes 20 [--install]
    python benchmarks/train_shapes.py --cfg shapes-yolov4-tiny --minutes 20

`--cfg` names a cfg in cfg/: `shapes` (YOLOv2 region, pjreddie's training) or `shapes-yolov4-tiny` (two
[yolo] heads, AlexeyAB's training). A checkpoint every 100 updates (Darknet's schedule below 1000 for
pjreddie's cfgs; `saveweights=100` in the .data file for AlexeyAB's) is scored afterwards on the held-out
list (VOC2010+ area AP, the same for both), its time taken from the file's mtime. `--install` (shapes only)
copies the final weights to models/shapes.weights and a held-out image to data/shapes.jpg.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

import pydarknet
from pydarknet.data.datafile import read_data_file
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.evaluate.detector_map import evaluate_map

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--cfg", default="shapes", help="a cfg of cfg/ (default shapes)")
    ap.add_argument("--workdir", default=None, help="default /tmp/pydarknet-<cfg>")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--valid", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--eval-images", type=int, default=300, help="held-out images scored per checkpoint")
    ap.add_argument("--eval-only", action="store_true", help="score the checkpoints of an earlier run")
    ap.add_argument("--install", action="store_true")
    args = ap.parse_args()

    if args.install and args.cfg != "shapes":
        ap.error("--install installs the shapes model only")
    work = Path(args.workdir or f"/tmp/pydarknet-{args.cfg}")
    data = work / "shapes.data"
    cfg = ROOT / "cfg" / f"{args.cfg}.cfg"
    if not data.exists():
        make_shapes_dataset(work, n_train=args.train, n_valid=args.valid, size=(128, 128), seed=1)
        if pydarknet.load(cfg).dialect == "alexeyab":  # its default saves every 1000 updates
            data.write_text(data.read_text() + "saveweights=100\n")
    backup = Path(read_data_file(data)["backup"])
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at the start")
    if args.eval_only:
        log = (backup / "train.log").read_text()
        start, wall = float(log.splitlines()[0].split()[1]), float(log.splitlines()[0].split()[2])
    else:
        shutil.rmtree(backup, ignore_errors=True)
        start = time.time()
        cmd = [sys.executable, "-m", "pydarknet", "detector", "train", str(data), str(cfg), "--workers",
               str(args.workers), "--minutes", str(args.minutes), "--darknet-log"]
        run = subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.time() - start
        print(f"# load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end of training")
        summary = re.findall(r"^\d+ iterations, .*$", run.stderr, re.M)
        log = run.stdout + "".join(f"# {line}\n" for line in summary)  # images/s, data-wait share
        (backup / "train.log").write_text(f"# {start} {wall}\n{log}")
    lines = [m for m in re.finditer(r"^ ?(\d+): [\d.]+, ([\d.]+) avg", log, re.M)]
    batches = int(lines[-1].group(1)) if lines else 0
    print(*re.findall(r"^# (\d+ iterations, .*)$", log, re.M), sep="\n")
    net_cfg = pydarknet.load(cfg).config
    print(f"trained {batches} batches x {net_cfg.full_batch} images in {wall / 60:.1f} min: "
          f"{batches * net_cfg.full_batch / wall:.1f} images/s (data loading included)")

    print("minutes  batch  avg_loss  mAP@.5")
    numbered = (p for p in backup.glob(f"{cfg.stem}_*.weights") if re.search(r"_(\d+|final)\.weights$", p.name))
    checkpoints = sorted(numbered, key=lambda p: p.stat().st_mtime)
    valid = Path(read_data_file(data)["valid"]).read_text().split()
    names = Path(read_data_file(data)["names"]).read_text().split()
    best = None
    for ckpt in checkpoints:
        net = pydarknet.load(cfg, ckpt)
        result = evaluate_map(net, valid[:args.eval_images], names, relative_to=data, progress=False)
        match = re.search(r"_(\d+)\.weights$", ckpt.name)
        i = int(match.group(1)) if match else batches
        loss = next((m.group(2) for m in lines if int(m.group(1)) == i), "-")
        print(f"{(ckpt.stat().st_mtime - start) / 60:7.2f}  {i:5d}  {loss:>8}  {result.mean_ap:.4f}")
        best = result
    if best is not None:
        print(best.table())
    net = pydarknet.load(cfg, backup / f"{cfg.stem}_final.weights")
    x = torch.rand(8, 3, net.config.height, net.config.width)
    with torch.no_grad():
        net(x)
        t0 = time.time()
        for _ in range(5):
            net(x)
    print(f"inference: {40 / (time.time() - t0):.1f} images/s (batch 8, same cfg)")
    if args.install:
        shutil.copy(backup / "shapes_final.weights", ROOT / "models" / "shapes.weights")
        shutil.copy(read_data_file(data)["names"], ROOT / "data" / "shapes.names")
        shutil.copy(valid[0], ROOT / "data" / "shapes.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
