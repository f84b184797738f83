"""`calc_anchors` (k-means anchors for a [region]) and `wordtree` (a class's path to the WordTree root)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from pydarknet.errors import DarknetError
from pydarknet.paths import resolve_path
from pydarknet.wordtree import Tree, path_to_root, read_tree

DEFAULT_STRIDE = 32  # YOLOv2's region grid is the input / 32 (Darknet-19 downsamples 5 times)


def calc_anchors(args: argparse.Namespace) -> int:
    from pydarknet.anchors import (
        format_anchors,
        kmeans_anchors,
        load_box_sizes,
        plot_clusters,
        region_grid,
        write_region_anchors,
    )

    stride_w = stride_h = float(DEFAULT_STRIDE)
    width, height = args.width, args.height
    if args.write_cfg:
        net_w, net_h, grid_w, grid_h = region_grid(args.write_cfg)
        stride_w, stride_h = net_w / grid_w, net_h / grid_h
        width, height = width or net_w, height or net_h
    if not width or not height or width <= 0 or height <= 0:
        raise DarknetError("give the network input size: -width W -height H (or --write-cfg CFG)")
    sizes = load_box_sizes(args.data, args.label_policy, progress=True)
    if sizes.problems:
        shown = sizes.problems[:5]
        more = f" (and {len(sizes.problems) - len(shown)} more)" if len(sizes.problems) > len(shown) else ""
        print("\n".join(f"warning: {p}" for p in shown) + more, file=sys.stderr)
    if not len(sizes.wh):
        raise DarknetError("no boxes in the labels of the train= list", args.data)
    print(f"{len(sizes.wh)} boxes from {sizes.images} images", flush=True)
    clusters = kmeans_anchors(sizes.wh, args.num_of_clusters, seed=args.seed)
    cells = np.array([width / stride_w, height / stride_h])
    anchors = clusters.anchors * cells
    text = format_anchors(anchors)
    print(f"k-means, distance 1 - IoU, k-means++ seed {args.seed}: {args.num_of_clusters} clusters, "
          f"{clusters.iterations} iterations")
    print(f"units: grid cells of the {width}x{height} input's {cells[0]:g}x{cells[1]:g} region grid")
    print(f"anchors = {text}")
    print(f"mean IoU = {clusters.mean_iou:.4f} (each box with its nearest anchor)")
    if args.write_cfg:
        write_region_anchors(args.write_cfg, text, args.num_of_clusters)
        print(f"wrote anchors= and num={args.num_of_clusters} into the last [region] of {args.write_cfg}")
    if args.plot:
        plot_clusters(sizes.wh * cells, clusters.assignment, anchors, args.plot)
        print(f"plot: {args.plot}")
    return 0


def find_classes(tree: Tree, query: str) -> list[int]:
    """Classes a user means by `query`: a synset id (n02084071), a class index, or a name (exact, else
    ignoring case). Several for names the tree uses more than once (crane, bass, mouse)."""
    query = query.strip()
    if query.isdigit() and int(query) < tree.n:
        return [int(query)]
    by_id = [i for i, synset in enumerate(tree.ids) if synset.lower() == query.lower()]
    if by_id or tree.names is None:
        return by_id
    exact = [i for i, name in enumerate(tree.names) if name == query]
    return exact or [i for i, name in enumerate(tree.names) if name.lower() == query.lower()]


def wordtree(args: argparse.Namespace) -> int:
    names_path = resolve_path(args.names)
    tree = read_tree(resolve_path(args.tree), names_path)
    found = find_classes(tree, args.name)
    if not found:
        raise DarknetError(f"no class {args.name!r}: not a synset id, class index or name of the tree", names_path)
    if len(found) > 1:
        print(f"{args.name!r} names {len(found)} classes; give one by its synset id:")
        for cls in found:
            chain = " < ".join(tree.names[c] for c in path_to_root(tree, cls))
            print(f"{cls:5d} {tree.ids[cls]} {chain}")
        return 2
    for cls in path_to_root(tree, found[0]):  # the same path `detect --json` reports
        print(f"{cls:5d} {tree.ids[cls]} {tree.names[cls]}")
    return 0
