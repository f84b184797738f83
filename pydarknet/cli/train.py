"""`detector train`."""

from __future__ import annotations

import argparse
import sys

from pydarknet.train.loop import TrainOptions, train_detector


def detector_train(args: argparse.Namespace) -> int:
    # The progress bar only on a terminal: in a log it is noise around the warning and error lines.
    opts = TrainOptions(clear=args.clear, device=args.device, workers=args.workers,
                        max_batches=args.max_batches, minutes=args.minutes, amp=args.amp,
                        darknet_log=args.darknet_log, label_policy=args.label_policy, seed=args.seed,
                        loader=args.loader,
                        progress=sys.stderr.isatty())
    final = train_detector(args.data, args.cfg, args.weights, opts)
    print(f"Saved {final}")
    return 0
