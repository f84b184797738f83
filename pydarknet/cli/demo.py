"""`detector demo DATA CFG WEIGHTS [VIDEO]`: detections drawn on every frame, written as a video."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from pydarknet.cli.main import dialect_default
from pydarknet.cli.network import load_network
from pydarknet.data.datafile import read_data_file, read_data_names
from pydarknet.demo import Frame, run_demo
from pydarknet.errors import DarknetError


def detector_demo(args: argparse.Namespace) -> int:
    options = read_data_file(args.data)
    net = load_network(args)
    if not net.heads:
        raise DarknetError("has no detection layer: `detector demo` needs a detector", args.cfg)
    names = read_data_names(options, net.heads[-1][1].classes)
    source = args.video if args.video is not None else args.camera
    bar: tqdm | None = None

    def report(frame: Frame) -> None:
        # Darknet's per-frame block (without its clear-screen codes), above the progress bar.
        nonlocal bar
        if bar is None:
            bar = tqdm(total=frame.total, unit="frame", file=sys.stderr, disable=None if frame.total else True,
                       leave=False)
        lines = [line for d in frame.detections for line in d.lines(names)]
        bar.write("\n".join([f"FPS:{1 / frame.seconds if frame.seconds > 0 else 0:.1f}", "Objects:", "", *lines]),
                  file=sys.stdout)
        bar.update()

    try:
        result = run_demo(net, source, args.out_filename, names,
                          thresh=dialect_default(args.thresh, net.dialect, "demo"), hier_thresh=args.hier,
                          nms=dialect_default(args.nms, net.dialect, "demo_nms"), avg=args.avg, on_frame=report,
                          letterbox=True if args.letter_box else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.out_filename}: {result.frames} frames, {result.width}x{result.height} at {result.fps:g} fps; "
          f"average FPS:{result.average_fps:.1f}")
    return 0
