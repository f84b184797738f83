"""`detector test` (Darknet's output) and `detect` (short form, several images, JSON)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from pydarknet.cli.network import load_network
from pydarknet.data.datafile import read_data_file, read_data_names
from pydarknet.detect import decode_detections, detection_records, draw, network_input
from pydarknet.errors import DarknetError
from pydarknet.image import load_image, save_image
from pydarknet.names import default_names, read_names

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


def run_detection(net, names: list[str], images: list[Path], args: argparse.Namespace) -> int:  # noqa: ANN001
    """Detect in each image, print Darknet's lines (or JSON), draw; a bad image is reported, not fatal."""
    import torch

    failures = 0
    device = next(net.parameters()).device
    num_classes = net.region.params.classes
    several = len(images) > 1
    for path in tqdm(images, disable=None if several else True, unit="img", file=sys.stderr):
        try:
            image = load_image(path)
        except DarknetError as err:
            print(f"pydarknet: {err}", file=sys.stderr)
            failures += 1
            continue
        start = time.time()
        x = torch.from_numpy(network_input(image, net.config.width, net.config.height, not args.resize))[None]
        with torch.no_grad():
            out = net(x.to(device))[0].float()
        dets = decode_detections(net, out, image.shape[2], image.shape[1], args.thresh, args.hier, args.nms,
                                 not args.resize)
        elapsed = time.time() - start
        if args.json:
            record = {"image": str(path), "width": image.shape[2], "height": image.shape[1],
                      "seconds": elapsed,
                      "detections": detection_records(dets, names, image.shape[2], image.shape[1],
                                                      net.region.tree)}
            print(json.dumps(record), flush=True)
        else:
            print(f"{path}: Predicted in {elapsed:f} seconds.")
            for d in dets:
                print("\n".join(d.lines(names)))
            sys.stdout.flush()
        if not args.no_draw:
            stem = args.out or ("predictions" if not several else f"{path.stem}_predictions")
            save_image(f"{stem}.jpg", draw(image, dets, names, num_classes))
    return 2 if failures else 0


def _load(args: argparse.Namespace):  # noqa: ANN202
    net = load_network(args)
    if net.region is None:
        raise DarknetError("has no [region] layer: use `classifier predict` for classifiers", args.cfg)
    return net


def detector_test(args: argparse.Namespace) -> int:
    options = read_data_file(args.data)
    net = _load(args)
    classes = net.region.params.classes
    names = read_data_names(options, classes)
    images = expand_images(args.images) if args.images else [Path(p) for p in _prompted_images()]
    return run_detection(net, names, images, args)


def detect(args: argparse.Namespace) -> int:
    net = _load(args)
    classes = net.region.params.classes
    if args.names:
        names = read_names(args.names, classes)
    elif args.data:
        names = read_data_names(read_data_file(args.data), classes)
    else:
        names = default_names(classes)
    images = expand_images(args.images)
    if not images:
        raise DarknetError("no images found", args.images[0])
    return run_detection(net, names, images, args)
