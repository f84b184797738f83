"""`detector train`, `classifier train` and `classifier valid`."""

from __future__ import annotations

import argparse
import sys

from pydarknet.train.distributed import is_main_process
from pydarknet.train.loop import TrainOptions, train_detector


def _options(args: argparse.Namespace, **extra) -> TrainOptions:
    # The progress bar only on a terminal: in a log it is noise around the warning and error lines.
    return TrainOptions(clear=args.clear, device=args.device, workers=args.workers, max_batches=args.max_batches,
                        minutes=args.minutes, amp=args.amp, darknet_log=args.darknet_log,
                        label_policy=args.label_policy, seed=args.seed, progress=sys.stderr.isatty(), **extra)


def detector_train(args: argparse.Namespace) -> int:
    final = train_detector(args.data, args.cfg, args.weights, _options(args, loader=args.loader))
    if is_main_process():
        print(f"Saved {final}")
    return 0


def classifier_train(args: argparse.Namespace) -> int:
    from pydarknet.train.classifier import train_classifier

    final = train_classifier(args.data, args.cfg, args.weights, _options(args))
    if is_main_process():
        print(f"Saved {final}")
    return 0


def classifier_valid(args: argparse.Namespace) -> int:
    from pydarknet.malloc import keep_freed_memory
    from pydarknet.train.classifier import validate_classifier

    keep_freed_memory()  # as the other inference commands, but before the load (validate_classifier loads)
    # Darknet's running line per image: the last one is the result.
    validate_classifier(args.data, args.cfg, args.weights, args.device, args.top, log=print, exact=args.exact)
    return 0
