"""`classifier predict`: Darknet's top-k lines."""

from __future__ import annotations

import argparse
import sys
import time

from pydarknet.classify import classifier_lines, classify
from pydarknet.cli.network import load_network
from pydarknet.data.datafile import read_data_file, read_data_names
from pydarknet.image import load_image


def classifier_predict(args: argparse.Namespace) -> int:
    options = read_data_file(args.data)
    top = args.top if args.top is not None else int(options.get("top", 1) or 1)
    net = load_network(args)
    classes = net.shapes[net.output_index].size
    names = read_data_names(options, classes)
    start = time.time()
    predictions = classify(net, load_image(args.image), top)
    print(f"{args.image}: Predicted in {time.time() - start:f} seconds.", file=sys.stderr)
    print("\n".join(classifier_lines(predictions, names)))
    return 0
