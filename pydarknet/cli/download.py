"""`download NAME [-o DIR]`: an official weights file, resumable and verified."""

from __future__ import annotations

import argparse

from pydarknet.download import download as fetch


def download(args: argparse.Namespace) -> int:
    result = fetch(args.name, args.out_dir, url=args.url, sha256=args.sha256, force=args.force)
    state = "saved" if result.downloaded else "already present"
    checked = ", verified" if result.verified else " (no size or sha256 known to check it against)"
    print(f"{result.path}: {state}, {result.path.stat().st_size} bytes{checked}")
    return 0
