"""CPU inference: pydarknet against OpenCV 4.x dnn's Darknet importer, same cfg, weights and input.

    python benchmarks/infer.py --setup          # once: a venv with OpenCV 4.x for the peer (see README)
    python benchmarks/infer.py [--quick] [--threads 2] [--engines exact,fast,opencv] [--ablation]
    python benchmarks/infer.py --post-only [--passive-wait] [--rows yolo-voc,yolo9000]  # decode alone
    python benchmarks/infer.py --cli [--quick]          # `pydarknet detect` against OpenCV doing its job

Every engine runs in its own worker process (fresh per network and batch, so its peak RSS is its own),
answering "time N forward passes" over a pipe. The main process asks the workers in turn, one pass
each after a short pause (SETTLE), rotating the order, so that the load of a shared machine hits every
engine alike and no engine's spinning threads run during another's pass; the medians
and ratios are taken over those interleaved passes. Warm-up passes happen in the workers before the
first request and are not counted.

OpenCV 4.x is not a pydarknet dependency (the project uses opencv-python-headless 5, whose dnn module
has no Darknet importer): its worker runs under the python of a separate venv, `--opencv-python`.
The OpenCV worker imports only cv2 and numpy, so this file must not import torch at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path.home() / ".cache" / "pydarknet" / "opencv4-venv"
IMAGES = ["dog", "person", "horses", "eagle", "giraffe", "kite", "scream", "dog"]  # batch 8: data/*.jpg
SEED = 20240607
# --passive-wait: idle pool threads sleep at once instead of spinning first (libgomp for torch, the
# pthreads pool of OpenCV). Read when the libraries load, so set in the workers' environment.
PASSIVE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE", "OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "0",
                "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "0", "OPENCV_THREAD_POOL_ACTIVE_WAIT_PAUSE_LIMIT": "0"}
# Seconds between two timed passes: by default an engine's idle pool threads spin before they sleep
# (libgomp: 300000 iterations, milliseconds), and would take one of the CPUs from the next engine's pass
# (yolov4-tiny, default environment: OpenCV's median 94.5-167.5 ms without the pause, 96.5 with it).
SETTLE = 0.05


@dataclass(frozen=True)
class Row:
    name: str
    cfg: str
    size: int
    batch: int
    peer: bool = True  # OpenCV runs it too (its region layer has no WordTree: not yolo9000)
    sized: bool = True  # the cfg's width/height set to `size`; else the cfg as it is, run at `size`

    @property
    def label(self) -> str:
        return f"{self.name} @{self.size}" + ("" if self.sized else " (cfg unmodified)")


ROWS = [
    Row("yolo-voc", "cfg/yolov2-voc.cfg", 416, 1),
    Row("tiny-yolo-voc", "cfg/yolov2-tiny-voc.cfg", 416, 1),
    Row("darknet19", "cfg/darknet19.cfg", 256, 1),
    Row("darknet19", "cfg/darknet19.cfg", 224, 1, sized=False),  # the cfg says 256
    Row("yolo-voc", "cfg/yolov2-voc.cfg", 608, 1, sized=False),  # the cfg says 416
    Row("yolo-voc", "cfg/yolov2-voc.cfg", 416, 8),
    Row("tiny-yolo-voc", "cfg/yolov2-tiny-voc.cfg", 416, 8),
    Row("darknet19", "cfg/darknet19.cfg", 256, 8),
    Row("yolo9000", "cfg/yolo9000.cfg", 544, 1, peer=False),
    # The [yolo] family (AlexeyAB's semantics: plain resize, BatchNorm folded in double, several heads).
    Row("yolov4-tiny", "cfg/yolov4-tiny.cfg", 416, 1),
    Row("yolov3", "cfg/yolov3.cfg", 416, 1),
    Row("yolov4", "cfg/yolov4.cfg", 608, 1),
]

# --ablation: one lever added per row; the last row is the default network (`load()`) as the CLI runs it.
ABLATION = [
    ("exact: load(exact=True), no_grad", []),
    ("+ inference_mode", ["inference_mode"]),
    ("+ BN folded (FastConv.fold, the variant off the CPU)", ["inference_mode", "fold"]),
    ("+ channels_last (and the 2x2 pools' variant)", ["inference_mode", "fold", "channels_last"]),
    ("+ malloc keeps freed memory", ["inference_mode", "fold", "channels_last", "malloc"]),
    ("+ packed oneDNN conv, fused act (winograd=False)", ["inference_mode", "malloc", "packed"]),
    ("+ Winograd where it pays = load() as the CLI runs it", ["inference_mode", "malloc", "winograd"]),
]


def _ablation_net(cfg: str, weights: str, levers: list[str]):  # noqa: ANN202
    """The network with the given levers applied, and whether to run it under inference_mode."""
    import torch

    import pydarknet
    from pydarknet.fast import prepare
    from pydarknet.layers.fast_conv import FastConv
    from pydarknet.network import build_network

    if not {"fold", "packed", "winograd"} & set(levers):
        net = pydarknet.load(cfg, weights, exact=True)
    else:
        net = build_network(cfg, "fast")
        net.load_weights(weights)
        net.eval()
        if "fold" in levers:
            for conv in (m for m in net.modules() if isinstance(m, FastConv)):
                conv.fold()
        else:
            prepare(net, winograd="winograd" in levers)
    if "channels_last" in levers:
        net.to(memory_format=torch.channels_last)
    if "malloc" in levers:
        pydarknet.keep_freed_memory()  # after the load, as the CLI
    return net, "inference_mode" in levers


# ----------------------------------------------------------------------------------------------- workers


def _peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and
    exec, so a worker would report its parent's peak when that is higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _serve(timers: dict, warmup: int, info: dict) -> None:
    """Warm up, report ready, then answer {"n": N} with N timed passes of every timer, until EOF."""
    for _ in range(warmup):
        for fn in timers.values():
            fn()
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        n = json.loads(line)["n"]
        times: dict[str, list[float]] = {k: [] for k in timers}
        for _ in range(n):
            for key, fn in timers.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        print(json.dumps({"times": times}), flush=True)
    print(json.dumps({"maxrss_mb": _peak_rss_mb()}), flush=True)


def opencv_worker(spec: dict) -> None:
    import cv2

    cv2.setNumThreads(spec["threads"])
    start = time.perf_counter()
    net = cv2.dnn.readNetFromDarknet(spec["cfg"], spec["weights"])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    load_s = time.perf_counter() - start
    x = np.load(spec["input"])
    # What a caller builds for N images: blobFromImages of HWC float images (no scaling, no swap).
    blob = cv2.dnn.blobFromImages([np.ascontiguousarray(im.transpose(1, 2, 0)) for im in x])
    assert np.array_equal(blob, x)

    outputs = net.getUnconnectedOutLayersNames()  # every detection layer of a [yolo] net, as callers ask

    def forward() -> None:
        net.setInput(blob)
        net.forward(outputs)

    net.setInput(blob)
    np.save(spec["out"], net.forward(spec["opencv_layer"]) if spec["opencv_layer"] else net.forward())
    info = {"load_s": load_s, "version": cv2.__version__, "threads": cv2.getNumThreads()}
    _serve({"forward": forward}, spec["warmup"], info)


def pydarknet_worker(spec: dict) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    import pydarknet

    start = time.perf_counter()
    recipe = spec["recipe"]
    mode = torch.no_grad  # as the detector and the CLI run a network
    if recipe == "exact":
        net = pydarknet.load(spec["cfg"], spec["weights"], exact=True)
    elif recipe == "fast":  # the default network, in a process set up as the CLI sets up its own
        net = pydarknet.load(spec["cfg"], spec["weights"])
        pydarknet.keep_freed_memory()
    else:
        net, inference = _ablation_net(spec["cfg"], spec["weights"], recipe)
        mode = torch.inference_mode if inference else torch.no_grad
    load_s = time.perf_counter() - start
    x = torch.from_numpy(np.load(spec["input"]))
    if isinstance(recipe, list) and "channels_last" in recipe:
        x = x.contiguous(memory_format=torch.channels_last)

    def forward() -> torch.Tensor:
        with mode():
            return net(x)

    np.save(spec["out"], forward().float().numpy())
    timers = {"forward": forward}
    if spec["post"]:  # imported only here: pydarknet.image brings cv2, whose memory counts too
        from pydarknet.detector import Detector
        from pydarknet.image import load_image

        image = load_image(ROOT / "data" / f"{IMAGES[0]}.jpg")
        detector = Detector(net)
        (outs,) = detector.forward(x[:1])  # every head's output
        frame = detector.frame(image)
        timers["post"] = lambda: detector.decode(outs, frame)
        if spec["e2e"]:
            timers["end to end"] = lambda: detector.detect([image])
    info = {"load_s": load_s, "version": f"pydarknet {pydarknet.__version__}, torch {torch.__version__}",
            "threads": torch.get_num_threads()}
    _serve(timers, spec["warmup"], info)


# ------------------------------------------------------------------------------------------ preparation


def randomize(net, seed: int) -> None:  # noqa: ANN001
    """Seeded weights with Darknet-like statistics: conv N(0, 2/fan_in); BN scales and variances
    U(.5, 1.5) (positive), means and biases N(0, .1); plain conv biases N(0, .1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in net.layers:
            conv = getattr(layer, "conv", None)
            if conv is None:
                continue
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            if layer.bn is None:
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)
                continue
            n = layer.bn.weight.numel()
            layer.bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            layer.bn.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            layer.bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            layer.bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def calibrate_objectness(net, x, share: float = 0.01) -> None:  # noqa: ANN001
    """Shift the objectness logits (biases of the convs before the detection layers) so that `share` of the
    boxes pass the cfg's Darknet's default threshold (.5; AlexeyAB's .25) on `x`. Random weights put most
    of them above it: hundreds of candidates for NMS and the WordTree walk, where a trained detector gives
    a handful."""
    import torch

    heads = [(i, head, [a * (4 + 1 + head.classes) + 4 for a in range(head.params.n)]) for i, head in net.heads]
    thresh = 0.25 if net.dialect == "alexeyab" else 0.5
    with torch.no_grad():
        outputs = net(x, outputs=[i - 1 for i, _, _ in heads])
        logits = torch.cat([out[:, channels].flatten() for out, (_, _, channels) in zip(outputs, heads)])
        shift = torch.quantile(logits, 1 - share) - torch.logit(torch.tensor(thresh))
        for i, _, channels in heads:
            net.layers[i - 1].conv.bias[channels] -= shift


def network_inputs(net, images: list, size: int) -> np.ndarray:  # noqa: ANN001
    """The images as the cfg's Darknet feeds its detector (or classifier: letterboxed), at size x size."""
    from pydarknet.image import letterbox_image, resize_image

    geometry = letterbox_image if not net.heads or net.heads[-1][1].letterbox("test") else resize_image
    return np.stack([geometry(im, size, size) for im in images]).astype(np.float32)


def sized_cfg(row: Row, work: Path) -> Path:
    """The row's cfg with width/height set to the row's size (both engines read this file)."""
    lines = []
    for line in (ROOT / row.cfg).read_text().splitlines():
        key = line.split("=")[0].strip()
        if key in ("width", "height"):
            line = f"{key}={row.size}"
        lines.append(line)
    path = work / f"{Path(row.cfg).stem}_{row.size}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(rows: list[Row], work: Path) -> dict[Row, dict]:
    """Per row: the cfg, seeded weights (one file per cfg), the input batch (letterboxed or resized as the
    cfg's Darknet does), and the exact pydarknet's outputs to check every engine against: the network
    output, and the input of the last detection layer or the output of a classifier."""
    import torch

    import pydarknet
    from pydarknet.image import load_image
    from pydarknet.network import build_network

    files: dict[Row, dict] = {}
    weights: dict[str, Path] = {}
    for row in rows:
        cfg = sized_cfg(row, work) if row.sized else ROOT / row.cfg
        images = [load_image(ROOT / "data" / f"{IMAGES[i % len(IMAGES)]}.jpg") for i in range(row.batch)]
        if row.cfg not in weights:
            net = build_network(cfg).eval()
            randomize(net, SEED)
            if net.heads:
                calibrate_objectness(net, torch.from_numpy(network_inputs(net, images[:1], row.size)))
            weights[row.cfg] = work / f"{Path(row.cfg).stem}.weights"
            net.save_weights(weights[row.cfg])
            del net
        net = pydarknet.load(cfg, weights[row.cfg], exact=True)
        x = network_inputs(net, images, row.size)
        stem = f"{row.name}_{row.size}_{row.batch}"
        np.save(work / f"input_{stem}.npy", x)
        # A detector's outputs are checked on the conv before its (last) detection layer: OpenCV's region
        # and yolo outputs are detection lists of its own.
        check = net.heads[-1][0] - 1 if net.heads else len(net.layers) - 1
        with torch.no_grad():
            out, checked = net(torch.from_numpy(x), outputs=[net.output_index, check])
        np.save(work / f"exact_out_{stem}.npy", out.numpy())
        np.save(work / f"exact_check_{stem}.npy", checked.numpy())
        del out, checked
        files[row] = {"cfg": str(cfg), "weights": str(weights[row.cfg]), "input": str(work / f"input_{stem}.npy"),
                      "stem": stem, "opencv_layer": f"conv_{check}" if net.heads else "",
                      "detector": bool(net.heads)}
    return files


# -------------------------------------------------------------------------------------------- post-only

# (thresh, hier_thresh, nms): `detector test`'s defaults, then thresh .24 and .25.
POST_SETTINGS = [(0.5, 0.5, 0.45), (0.24, 0.5, 0.45), (0.25, 0.5, 0.45)]
POST_ROWS = ("yolo-voc", "tiny-yolo-voc", "yolo9000")


def post_timers(net, out, region_in, img_w: int, img_h: int) -> tuple[dict, dict]:  # noqa: ANN001
    """{label: fn} to time and {label: what it processed} for one network output."""
    import torch

    from pydarknet.detector import Detector
    from pydarknet.heads import Frame

    head = net.heads[-1][1]
    p = head.params
    objectness = out.reshape(p.n, -1, out.shape[1] * out.shape[2])[:, p.coords]
    frame = Frame(img_w, img_h, net.config.width, net.config.height, letterbox=True)
    timers, notes = {}, {}
    for thresh, hier, nms in POST_SETTINGS:
        key = f"decode thresh {thresh} hier {hier} nms {nms}"
        detector = Detector(net, thresh=thresh, hier_thresh=hier, nms=nms)
        timers[key] = lambda d=detector: d.decode([out], frame).detections()
        notes[key] = f"{len(timers[key]())} dets, {int((objectness > np.float32(thresh)).sum())} boxes > thresh"
    if head.tree is not None:
        def activate() -> None:
            with torch.no_grad():
                head(region_in)

        key = "region activation (WordTree softmax)"
        timers[key], notes[key] = activate, f"input {tuple(region_in.shape)}"
    return timers, notes


def run_post_only(args: argparse.Namespace) -> int:
    if args.passive_wait:
        os.environ.update(PASSIVE_WAIT)  # before torch loads libgomp
    import torch

    torch.set_num_threads(args.threads)
    names = set(args.rows.split(",") if args.rows else POST_ROWS) & set(POST_ROWS)
    rows = [r for r in ROWS if r.batch == 1 and r.name in names]
    print(f"CPU: {cpu_model()}; threads: {args.threads}; torch {torch.__version__}, numpy {np.__version__}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}")
    work = Path(tempfile.mkdtemp(prefix="pydarknet-bench-"))
    try:
        post_only(rows, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def post_only(rows: list[Row], args: argparse.Namespace, work: Path) -> None:
    """Time the post-processing alone, in this process, on a fixed network output per row: the exact
    network's output for dog.jpg with the benchmark's seeded weights (objectness calibrated as for the
    other rows: 1% of the boxes pass .5). Per setting: `Detector.decode` (region boxes, WordTree walk,
    NMS, the Detection list); for a WordTree region also the region layer's activation on the stored
    region input (its WordTree softmax is part of the network pass, not of the decode). Timers rotate,
    one pass each, so that the load of a shared machine hits them alike."""
    import torch

    import pydarknet
    from pydarknet.image import load_image

    files = prepare(rows, work)
    image = load_image(ROOT / "data" / f"{IMAGES[0]}.jpg")
    iters = args.iters or (15 if args.quick else 50)
    for row in rows:
        f = files[row]
        net = pydarknet.load(f["cfg"], f["weights"], exact=True)
        out = torch.from_numpy(np.load(work / f"exact_out_{f['stem']}.npy")[0])
        region_in = torch.from_numpy(np.load(work / f"exact_check_{f['stem']}.npy"))
        timers, notes = post_timers(net, out, region_in, image.shape[2], image.shape[1])
        times: dict[str, list[float]] = {k: [] for k in timers}
        for fn in timers.values():  # warm-up
            fn()
        keys = list(timers)
        for i in range(iters):
            for key in keys[i % len(keys):] + keys[: i % len(keys)]:
                start = time.perf_counter()
                timers[key]()
                times[key].append(time.perf_counter() - start)
        print(f"\n{row.label}, post-processing ({iters} interleaved passes; load average "
              f"{os.getloadavg()[0]:.2f})")
        print(f"  {'':45s} {'median ms':>9s} {'p10':>7s} {'p90':>7s}")
        for key, t in times.items():
            q = np.percentile(t, [10, 90]) * 1e3
            print(f"  {key:45s} {statistics.median(t) * 1e3:9.2f} {q[0]:7.2f} {q[1]:7.2f}   {notes[key]}")


# -------------------------------------------------------------------------------------------- main side


class Worker:
    def __init__(self, python: str, spec: dict) -> None:
        env = {**os.environ, **(PASSIVE_WAIT if spec["passive"] else {}), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([python, __file__, "--worker", json.dumps(spec)], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.info: dict = {}

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args[:2]} exited with {self.proc.wait()}")
        return json.loads(line)

    def ready(self) -> dict:
        self.info = self._reply()
        return self.info

    def run(self, n: int) -> dict[str, list[float]]:
        self.proc.stdin.write(json.dumps({"n": n}) + "\n")
        self.proc.stdin.flush()
        return self._reply()["times"]

    def close(self) -> float:
        self.proc.stdin.close()
        rss = self._reply()["maxrss_mb"]
        self.proc.wait()
        return rss


def measure(engines: dict[str, tuple[str, dict]], iters: int) -> dict[str, dict]:
    """Start every engine's worker, interleave `iters` single passes, stop them: per engine the
    per-timer median seconds, peak RSS (MB) and the worker's info."""
    workers: dict[str, Worker] = {}
    try:
        for name, (python, spec) in engines.items():  # one at a time: loading is timed too
            workers[name] = Worker(python, spec)
            workers[name].ready()
        names = list(workers)
        times: dict[str, dict[str, list[float]]] = {name: {} for name in names}
        for i in range(iters):
            for name in names[i % len(names):] + names[: i % len(names)]:
                time.sleep(SETTLE)
                for key, t in workers[name].run(1).items():
                    times[name].setdefault(key, []).extend(t)
        return {name: {"median": {k: statistics.median(v) for k, v in times[name].items()},
                       "rss": workers[name].close(), "info": workers[name].info,
                       "out": engines[name][1]["out"]} for name in names}
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.kill()


def setup_venv(venv: Path) -> Path:
    """Create the peer's venv with `opencv-python-headless<5` (its own site-packages: cv2 4.x)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(Path(__file__).parent /
                    "requirements.txt")], check=True)
    return python


def cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return f"{name} ({os.cpu_count()} logical CPUs; {' '.join(simd)})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opencv-python", default=str(DEFAULT_VENV / "bin" / "python"),
                        help=f"python of a venv with opencv-python-headless<5 (default {DEFAULT_VENV})")
    parser.add_argument("--setup", action="store_true", help="create that venv (or update it) first")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer passes")
    parser.add_argument("--iters", type=int, default=None, help="timed passes per engine and row")
    parser.add_argument("--engines", default="exact,fast,opencv",
                        help="comma list of exact (load(exact=True)), fast (load() as the CLI runs it), opencv")
    parser.add_argument("--rows", default=None, help="comma list of row names (e.g. yolo-voc,yolo9000)")
    parser.add_argument("--batches", default="1,8", help="comma list of batch sizes (default 1,8)")
    parser.add_argument("--ablation", action="store_true", help="one lever at a time (on yolo-voc batch 1 "
                        "unless --rows is given)")
    parser.add_argument("--passive-wait", action="store_true", help="idle threads of every engine sleep "
                        "instead of spinning (see PASSIVE_WAIT)")
    parser.add_argument("--post-only", action="store_true", help="time only the post-processing (decode, "
                        "NMS; WordTree softmax) in this process, batch-1 detector rows (see post_only)")
    parser.add_argument("--cli", action="store_true", help="the CLI row: `pydarknet detect` with no flags "
                        "against OpenCV doing the same job, per image (see detect_cli.py)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # this tree's pydarknet, whatever is installed (workers: PYTHONPATH)
    if args.worker:
        spec = json.loads(args.worker)
        (opencv_worker if spec["engine"] == "opencv" else pydarknet_worker)(spec)
        return 0

    if args.post_only:
        return run_post_only(args)
    if args.passive_wait:
        os.environ.update(PASSIVE_WAIT)  # for the CLI row's processes; the workers get it per spec

    opencv_python = args.opencv_python
    if args.setup:
        opencv_python = str(setup_venv(Path(opencv_python).parent.parent))
    engines = args.engines.split(",")
    if "opencv" in engines and not Path(opencv_python).exists():
        print(f"no {opencv_python}: run with --setup (or pass --opencv-python)", file=sys.stderr)
        return 2
    if args.cli:
        return run_cli(args, opencv_python)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [r for r in ROWS if (args.rows is None or r.name in args.rows.split(",")) and r.batch in batches]
    if args.ablation and args.rows is None:
        rows = [ROWS[0]]
    warmup = 1 if args.quick else 2

    import torch

    import pydarknet

    print(f"CPU: {cpu_model()}; threads: {args.threads}; python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}, pydarknet {pydarknet.__version__}")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="pydarknet-bench-"))
    try:
        files = prepare(rows, work)
        for row in rows:
            iters = args.iters or ((3 if row.batch > 1 else 5) if args.quick else (6 if row.batch > 1 else 15))
            engines = row_engines(row, files[row], args, opencv_python, work, warmup)
            report(row, measure(engines, iters), work, files[row]["stem"], iters)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_cli(args: argparse.Namespace, opencv_python: str) -> int:
    """The CLI row (detect_cli.py) on yolo-voc @416 with the benchmark's seeded weights."""
    import detect_cli

    count, repeats = (8, 2) if args.quick else (16, args.iters or 5)
    print(f"CPU: {cpu_model()}; threads: {args.threads}; {time.strftime('%Y-%m-%d %H:%M')}; load average at "
          f"start: {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="pydarknet-bench-"))
    try:
        row = ROWS[0]
        files = prepare([row], work)[row]
        result = detect_cli.measure(Path(files["cfg"]), Path(files["weights"]), opencv_python, work,
                                    args.threads, count, repeats, {})
        detect_cli.report(result, count, repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def row_engines(row: Row, files: dict, args: argparse.Namespace, opencv_python: str, work: Path,
                warmup: int) -> dict[str, tuple[str, dict]]:
    """{label: (python, worker spec)} of the engines that run this row."""
    def spec(engine: str, recipe: str | list[str], name: str) -> dict:
        return {"engine": engine, "recipe": recipe, "cfg": files["cfg"], "weights": files["weights"],
                "input": files["input"], "threads": args.threads, "warmup": warmup,
                "post": files["detector"] and row.batch == 1 and not args.ablation, "e2e": not row.peer,
                "opencv_layer": files["opencv_layer"], "passive": args.passive_wait,
                "out": str(work / f"out_{name}_{files['stem']}.npy")}

    chosen = args.engines.split(",")
    todo: dict[str, tuple[str, dict]] = {}
    if args.ablation:
        for i, (label, levers) in enumerate(ABLATION):
            todo[label] = (sys.executable, spec("pydarknet", levers, f"a{i}"))
    for recipe in ("exact", "fast"):
        if recipe in chosen and not args.ablation:
            todo[f"pydarknet {recipe}"] = (sys.executable, spec("pydarknet", recipe, recipe))
    if ("opencv" in chosen or args.ablation) and row.peer:
        todo["opencv"] = (opencv_python, spec("opencv", "", "opencv"))
    return todo


def _rel_diff(path: str, ref: np.ndarray) -> str:
    out = np.load(path).reshape(ref.shape)
    return f"{float(np.abs(out - ref).max() / np.abs(ref).max()):.1e}"


def report(row: Row, res: dict[str, dict], work: Path, stem: str, iters: int) -> None:
    """One row's table: median ms, images/s, peak RSS, time ratio to OpenCV, and how far each engine's
    output is from the exact pydarknet's (max |diff| / max |exact|; OpenCV: on the region's input)."""
    print(f"\n{row.label}, batch {row.batch} ({iters} interleaved passes each; "
          f"load average {os.getloadavg()[0]:.2f})")
    peer = res.get("opencv")
    print(f"  {'engine':40s} {'ms':>9s} {'img/s':>8s} {'RSS MB':>7s} {'/OpenCV':>8s} {'vs exact':>9s}")
    for name, r in res.items():
        ref = np.load(work / f"exact_{'check' if name == 'opencv' else 'out'}_{stem}.npy")
        for key, t in r["median"].items():
            label = name if key == "forward" else f"{name}: {key}"
            ratio = f"{t / peer['median']['forward']:8.2f}" if peer and key == "forward" else f"{'':8s}"
            diff = _rel_diff(r["out"], ref) if key == "forward" else ""
            print(f"  {label:40s} {_ms(t)} {row.batch / t:8.2f} {r['rss']:7.0f} {ratio} {diff:>9s}")
    for name, r in res.items():
        print(f"  [{name}: {r['info']['version']}, {r['info']['threads']} threads, load {r['info']['load_s']:.2f} s]")


if __name__ == "__main__":
    sys.exit(main())
