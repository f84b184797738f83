"""`detector test` (Darknet's output) and `detect` (short form, several images, JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from pydarknet.annotate import detection_records, draw
from pydarknet.cli.network import load_network
from pydarknet.data.datafile import read_data_file, read_data_names
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError
from pydarknet.image import save_image
from pydarknet.names import default_names, read_names
from pydarknet.zoo import detect_inputs

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def expand_images(items: list[str]) -> list[Path]:
    """Files as given; directories replaced by their images, sorted by name."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            out.append(path)
    return out


def _prompted_images() -> list[str]:
    """Darknet asks for paths on stdin when none is given."""
    paths = []
    while True:
        print("Enter Image Path: ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return paths
        if line.strip():
            paths.append(line.strip())


def run_detection(detector: Detector, names: list[str], images: list[Path], args: argparse.Namespace) -> int:
    """Detect in each image, print Darknet's lines (or JSON), draw; a bad image is reported, not fatal."""
    failures = 0
    several = len(images) > 1
    tree = getattr(detector.heads[-1], "tree", None)
    results = detector.run(tqdm(images, disable=None if several else True, unit="img", file=sys.stderr),
                           errors="report")
    for r in results:
        if r.error is not None:
            print(f"pydarknet: {r.error}", file=sys.stderr)
            failures += 1
            continue
        if args.json:
            record = {"image": str(r.source), "width": r.width, "height": r.height, "seconds": r.seconds,
                      "detections": detection_records(r.detections, names, r.width, r.height, tree)}
            print(json.dumps(record), flush=True)
        else:
            print(f"{r.source}: Predicted in {r.seconds:f} seconds.")
            for d in r.detections:
                print("\n".join(d.lines(names)))
            sys.stdout.flush()
        if not args.no_draw:
            stem = args.out or ("predictions" if not several else f"{Path(r.source).stem}_predictions")
            save_image(f"{stem}.jpg", draw(r.image, r.detections, names, detector.num_classes))
    return 2 if failures else 0


def _detector(args: argparse.Namespace) -> Detector:
    net = load_network(args)
    if not net.heads:
        raise DarknetError("has no detection layer: use `classifier predict` for classifiers", args.cfg)
    # One image at a time: Darknet's per-image "Predicted in" time.
    return Detector(net, thresh=args.thresh, hier_thresh=args.hier, nms=args.nms,
                    letterbox=False if args.resize else None, batch_size=1)


def detector_test(args: argparse.Namespace) -> int:
    options = read_data_file(args.data)
    detector = _detector(args)
    names = read_data_names(options, detector.num_classes)
    images = expand_images(args.images) if args.images else [Path(p) for p in _prompted_images()]
    return run_detection(detector, names, images, args)


def detect(args: argparse.Namespace) -> int:
    args.cfg, args.weights, args.images, model_names = detect_inputs(args.inputs)
    if not args.data:
        args.names = args.names or model_names
    detector = _detector(args)
    classes = detector.num_classes
    if args.names:
        names = read_names(args.names, classes)
    elif args.data:
        names = read_data_names(read_data_file(args.data), classes)
    else:
        names = default_names(classes)
    images = expand_images(args.images)
    if not images:
        raise DarknetError("no images found", args.images[0])
    return run_detection(detector, names, images, args)
