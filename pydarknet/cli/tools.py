"""Small commands: summary, partial, synth."""

from __future__ import annotations

import argparse

from pydarknet.network import build_network
from pydarknet.weights import weights_info
from pydarknet.zoo import model_cfg


def summary(args: argparse.Namespace) -> int:
    print(build_network(model_cfg(args.cfg)).summary())
    return 0


def partial(args: argparse.Namespace) -> int:
    """Darknet's `partial`: the first K layers' weights into a new file (e.g. `yolov4.conv.137`: the first 137
    layers of yolov4.weights). Only those are read, so the source may itself be a partial file. AlexeyAB's
    also restarts `seen` at 0 and writes its own header version (0.2.5); pjreddie's keeps both."""
    net = build_network(args.cfg)  # the trainable network: its weights are saved as they were read
    info = weights_info(args.weights, args.cfg)
    if info["fits"]:
        net.load_weights(args.weights)
    else:  # a partial file itself: read the layers it covers (the error names what is missing)
        net.load_weights(args.weights, upto=max(args.k, info["layers_covered"]))
    if net.dialect == "alexeyab":
        net.seen = 0
        net.weights_header = (0, 2, 5)
    net.save_weights(args.out, upto=args.k)
    print(f"Saving weights to {args.out}")
    return 0


def synth(args: argparse.Namespace) -> int:
    from pydarknet.data.synthetic import make_shapes_dataset

    data = make_shapes_dataset(args.out_dir, n_train=args.train, n_valid=args.valid,
                               size=(args.size, args.size), seed=args.seed)
    print(data)
    return 0
