"""`detector valid`, `detector map`, `detector recall`."""

from __future__ import annotations

import argparse
import sys
import time

from pydarknet.cli.network import load_network
from pydarknet.data.datafile import read_data_file, read_list, resolve_path
from pydarknet.errors import DarknetError
from pydarknet.evaluate.coco_eval import require_pycocotools
from pydarknet.evaluate.detector_map import map_from_data_file
from pydarknet.evaluate.recall import recall_lines
from pydarknet.evaluate.valid import validate_detector


def detector_valid(args: argparse.Namespace) -> int:
    net = load_network(args)
    start = time.time()
    paths = validate_detector(net, args.data, args.out)
    print(f"Total Detection Time: {time.time() - start:f} Seconds", file=sys.stderr)
    print(paths[0] if len(paths) == 1 else f"{paths[0].parent}/ ({len(paths)} files)")
    return 0


def detector_map(args: argparse.Namespace) -> int:
    if args.coco:
        require_pycocotools()  # before loading anything
    net = load_network(args)
    result = map_from_data_file(net, args.data, args.thresh, args.iou, coco=args.coco)
    print(result.table())
    if args.pr_dir:
        paths = result.save_pr_curves(args.pr_dir)
        print(f"precision-recall curves: {len(paths)} PNGs in {args.pr_dir}")
    return 0


def detector_recall(args: argparse.Namespace) -> int:
    options = read_data_file(args.data)
    if "valid" not in options:
        raise DarknetError("has no valid= list", args.data)
    valid = resolve_path(options["valid"], args.data)
    images = read_list(valid)
    net = load_network(args)
    for line in recall_lines(net, images, valid):
        print(line, file=sys.stderr, flush=True)  # Darknet prints these on stderr
    return 0
