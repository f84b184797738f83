"""`detector test` (Darknet's output) and `detect` (short form, several images, JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from pydarknet.alexeyab_text import detection_json, detection_json_file, draw_detections_v3_lines
from pydarknet.annotate import detection_records, draw
from pydarknet.cli.main import dialect_default
from pydarknet.cli.network import load_network
from pydarknet.data.datafile import read_data_file, read_data_names
from pydarknet.detection import darknet_lines
from pydarknet.detector import Detector, Result
from pydarknet.errors import DarknetError
from pydarknet.fileio import atomic_write
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


def _print_detections(r: Result, detector: Detector, names: list[str], args: argparse.Namespace) -> None:
    """The lines the cfg's Darknet prints for one image: pjreddie's draw_detections, or AlexeyAB's
    draw_detections_v3 (sorted by the left edge, best class first; boxes with -ext_output)."""
    if detector.net.dialect == "alexeyab":
        print(f"{r.source}: Predicted in {r.seconds * 1000:f} milli-seconds.")
        size = (r.width, r.height) if args.ext_output else None
        lines = draw_detections_v3_lines(r.detections, names, detector.thresh, size)
    else:
        print(f"{r.source}: Predicted in {r.seconds:f} seconds.")
        lines = darknet_lines(r.detections, names)
    if lines:
        print("\n".join(lines))
    sys.stdout.flush()


def run_detection(detector: Detector, names: list[str], images: list[Path], args: argparse.Namespace,
                  json_out: str | None = None) -> int:
    """Detect in each image, print Darknet's lines (or JSON), draw; a bad image is reported, not fatal.
    `json_out`: write AlexeyAB's JSON of every image there (`detector test -out`)."""
    failures = 0
    several = len(images) > 1
    tree = getattr(detector.heads[-1], "tree", None)
    results = detector.run(tqdm(images, disable=None if several else True, unit="img", file=sys.stderr),
                           errors="report")
    json_images: list[str] = []
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
            _print_detections(r, detector, names, args)
        if json_out is not None:
            json_images.append(detection_json(r.detections, names, len(json_images) + 1, str(r.source)))
        if not args.no_draw:
            stem = (args.out if json_out is None else None) or ("predictions" if not several
                                                                 else f"{Path(r.source).stem}_predictions")
            save_image(f"{stem}.jpg", draw(r.image, r.detections, names, detector.num_classes))
    if json_out is not None:
        atomic_write(json_out, detection_json_file(json_images).encode())
    return 2 if failures else 0


def _detector(args: argparse.Namespace, command: str) -> Detector:
    net = load_network(args)
    if not net.heads:
        raise DarknetError("has no detection layer: use `classifier predict` for classifiers", args.cfg)
    # One image at a time: Darknet's per-image "Predicted in" time.
    return Detector(net, thresh=dialect_default(args.thresh, net.dialect, command), hier_thresh=args.hier,
                    nms=args.nms, letterbox=False if args.resize else True if args.letter_box else None,
                    batch_size=1)


def detector_test(args: argparse.Namespace) -> int:
    options = read_data_file(args.data)
    detector = _detector(args, "test")
    names = read_data_names(options, detector.num_classes)
    images = expand_images(args.images) if args.images else [Path(p) for p in _prompted_images()]
    # AlexeyAB's -out names the JSON file of the detections; pjreddie's the image.
    json_out = args.out if detector.net.dialect == "alexeyab" else None
    return run_detection(detector, names, images, args, json_out)


def detect(args: argparse.Namespace) -> int:
    args.cfg, args.weights, args.images, model_names = detect_inputs(args.inputs)
    if not args.data:
        args.names = args.names or model_names
    detector = _detector(args, "detect")
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
