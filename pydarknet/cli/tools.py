"""Small commands: summary, partial, synth."""

from __future__ import annotations

import argparse

import pydarknet
from pydarknet.network import build_network
from pydarknet.zoo import model_cfg


def summary(args: argparse.Namespace) -> int:
    print(build_network(model_cfg(args.cfg)).summary())
    return 0


def partial(args: argparse.Namespace) -> int:
    """Darknet's `partial`: load a full weights file and save only the first K layers."""
    net = pydarknet.load(args.cfg, args.weights, exact=True)
    net.save_weights(args.out, upto=args.k)
    print(f"Saving weights to {args.out}")
    return 0


def synth(args: argparse.Namespace) -> int:
    from pydarknet.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(args.out_dir, n_train=args.train, n_valid=args.valid,
                               size=(args.size, args.size), seed=args.seed)
    print(data)
    return 0
