"""`detector map`."""

from __future__ import annotations

import argparse

import pydarknet
from pydarknet.device import get_device
from pydarknet.evaluate.detector_map import map_from_data_file


def detector_map(args: argparse.Namespace) -> int:
    net = pydarknet.load(args.cfg, args.weights, device=get_device(args.device))
    result = map_from_data_file(net, args.data, args.thresh, args.iou)
    print(result.table())
    return 0
