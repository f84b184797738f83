"""The network of an inference command (the ones with `--exact`)."""

from __future__ import annotations

import argparse

import pydarknet
from pydarknet.device import get_device
from pydarknet.malloc import keep_freed_memory


def load_network(args: argparse.Namespace) -> pydarknet.Darknet:
    """CFG and WEIGHTS as the inference network, or Darknet's arithmetic with --exact; then this process
    keeps freed memory for the passes that follow (`keep_freed_memory`: after loading, see there)."""
    net = pydarknet.load(args.cfg, args.weights, device=get_device(args.device), exact=args.exact)
    keep_freed_memory()
    return net
