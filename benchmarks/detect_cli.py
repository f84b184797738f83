"""The CLI row of infer.py (`infer.py --cli`): `pydarknet detect CFG WEIGHTS IMAGES...` with no flags
against OpenCV 4.x dnn doing the same job in Python, time per image.

The job, per image, for both engines, thresh .5 and NMS .45 (`detect`'s defaults):
read the JPEG; make the network input (pydarknet: Darknet's letterbox; OpenCV: `blobFromImage`'s plain
resize, as its samples do); forward; detections (pydarknet: Darknet's region decode and do_nms_sort;
OpenCV: its region layer's boxes, the best class's score over thresh, then `NMSBoxes`); print a line per
detection; draw the boxes and labels; write `<stem>_predictions.jpg`.

Per-image time = (T(N images) - T(1 image)) / (N - 1), where T is the wall time of the whole process
(interpreter start, imports, network load, the images): what a user waits per image beyond the first.
Start-up and load cancel out; so do the first pass's one-time costs. Runs alternate between the engines
and between N and 1; medians over the repetitions. The OpenCV side runs this file under the python of its
own venv, so nothing here imports torch or pydarknet at module level.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THRESH, NMS = 0.5, 0.45
PICTURES = ["dog", "person", "horses", "eagle", "giraffe", "kite", "scream"]


def opencv_job(spec: dict) -> None:
    """What a user of OpenCV's dnn writes for `detect`: runs under the OpenCV venv's python."""
    import cv2
    import numpy as np

    cv2.setNumThreads(spec["threads"])
    net = cv2.dnn.readNetFromDarknet(spec["cfg"], spec["weights"])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = Path(spec["names"]).read_text().splitlines()
    size = (spec["width"], spec["height"])
    for path in spec["images"]:
        image = cv2.imread(path)
        net.setInput(cv2.dnn.blobFromImage(image, 1 / 255, size, swapRB=True, crop=False))
        out = net.forward()  # a row per box: x, y, w, h (relative), objectness, class probabilities
        classes = out[:, 5:].argmax(1)
        scores = out[np.arange(len(out)), 5 + classes]
        ih, iw = image.shape[:2]
        boxes = [[int((x - w / 2) * iw), int((y - h / 2) * ih), int(w * iw), int(h * ih)] for x, y, w, h in out[:, :4]]
        for i in np.asarray(cv2.dnn.NMSBoxes(boxes, scores.tolist(), THRESH, NMS), dtype=int).reshape(-1):
            label = f"{names[classes[i]]}: {scores[i] * 100:.0f}%"
            print(label)
            x, y, w, h = boxes[i]
            cv2.rectangle(image, (x, y), (x + w, y + h), (0, 0, 255), 3)
            cv2.putText(image, label, (x, max(y - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2)
        cv2.imwrite(str(Path(spec["out_dir"]) / f"{Path(path).stem}_predictions.jpg"), image)


def _cfg_size(cfg: Path) -> tuple[int, int]:
    options = dict(line.split("=", 1) for line in cfg.read_text().splitlines() if "=" in line)
    return int(options["width"]), int(options["height"])


def _run(command: list[str], env: dict, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(cfg: Path, weights: Path, opencv_python: str, work: Path, threads: int, count: int, repeats: int,
            env: dict) -> dict[str, dict]:
    """{engine: {"per_image": s, "T1": s, "TN": s}} over `repeats` alternating runs of each."""
    images = work / "images"
    images.mkdir(exist_ok=True)
    paths = []
    for i in range(count):  # distinct names: one output file per image
        path = images / f"{i:02d}_{PICTURES[i % len(PICTURES)]}.jpg"
        shutil.copyfile(ROOT / "data" / f"{PICTURES[i % len(PICTURES)]}.jpg", path)
        paths.append(str(path))
    width, height = _cfg_size(cfg)
    out = work / "out"
    out.mkdir(exist_ok=True)

    def command(engine: str, todo: list[str]) -> list[str]:
        if engine == "pydarknet":
            return [sys.executable, "-m", "pydarknet", "detect", str(cfg), str(weights), *todo]
        spec = {"cfg": str(cfg), "weights": str(weights), "names": str(ROOT / "data" / "voc.names"),
                "width": width, "height": height, "images": todo, "out_dir": str(out), "threads": threads}
        return [opencv_python, __file__, "--opencv-job", json.dumps(spec)]

    engine_env = {**os.environ, **env, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    times: dict[str, dict[int, list[float]]] = {e: {1: [], count: []} for e in ("pydarknet", "opencv")}
    for r in range(repeats):
        order = [("pydarknet", count), ("opencv", count), ("pydarknet", 1), ("opencv", 1)]
        for engine, n in order[r % 4:] + order[:r % 4]:
            times[engine][n].append(_run(command(engine, paths[:n]), engine_env, out))
    result = {}
    for engine, t in times.items():
        t1, tn = statistics.median(t[1]), statistics.median(t[count])
        result[engine] = {"per_image": (tn - t1) / (count - 1), "T1": t1, "TN": tn}
    return result


def report(result: dict[str, dict], count: int, repeats: int) -> None:
    print(f"\nCLI: `pydarknet detect` (no flags) against OpenCV doing the same job, {count} images, "
          f"{repeats} runs each (load average {os.getloadavg()[0]:.2f})")
    print(f"  {'engine':12s} {'ms/image':>9s} {'T(1) s':>7s} {f'T({count}) s':>8s} {'/OpenCV':>8s}")
    peer = result["opencv"]["per_image"]
    for engine, r in result.items():
        print(f"  {engine:12s} {r['per_image'] * 1e3:9.1f} {r['T1']:7.2f} {r['TN']:8.2f} {r['per_image'] / peer:8.2f}")


if __name__ == "__main__" and sys.argv[1:2] == ["--opencv-job"]:
    opencv_job(json.loads(sys.argv[2]))
