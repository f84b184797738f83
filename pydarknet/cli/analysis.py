"""`calc_anchors` (k-means anchors for a [region] or [yolo] cfg), `detector calc_anchors` (AlexeyAB's) and
`wordtree` (a class's path to the WordTree root)."""

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
        plot_clusters,
        region_grid,
        write_region_anchors,
    )

    if args.write_cfg and _is_alexeyab(args.write_cfg):
        return detector_calc_anchors(args)
    stride_w = stride_h = float(DEFAULT_STRIDE)
    width, height = args.width, args.height
    if args.write_cfg:
        net_w, net_h, grid_w, grid_h = region_grid(args.write_cfg)
        stride_w, stride_h = net_w / grid_w, net_h / grid_h
        width, height = width or net_w, height or net_h
    if not width or not height or width <= 0 or height <= 0:
        raise DarknetError("give the network input size: -width W -height H (or --write-cfg CFG)")
    sizes = _box_sizes(args)
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


def _box_sizes(args: argparse.Namespace):  # noqa: ANN202
    from pydarknet.anchors import load_box_sizes

    sizes = load_box_sizes(args.data, args.label_policy, progress=True)
    if sizes.problems:
        shown = sizes.problems[:5]
        more = f" (and {len(sizes.problems) - len(shown)} more)" if len(sizes.problems) > len(shown) else ""
        print("\n".join(f"warning: {p}" for p in shown) + more, file=sys.stderr)
    if not len(sizes.wh):
        raise DarknetError("no boxes in the labels of the train= list", args.data)
    return sizes


def _is_alexeyab(cfg: str) -> bool:
    from pydarknet.cfg import parse_cfg
    from pydarknet.network import cfg_dialect

    return cfg_dialect(parse_cfg(cfg)) == "alexeyab"


def detector_calc_anchors(args: argparse.Namespace) -> int:
    """AlexeyAB's `detector calc_anchors`: anchors in pixels of the network size, its report, anchors.txt and
    counters_per_class.txt in the working directory, `-show`: cloud.png; --write-cfg: into every [yolo]."""
    from pydarknet.anchors import (
        alexeyab_report,
        format_anchors_pixels,
        kmeans_anchors,
        mean_best_iou_percent,
        plot_cloud,
        plot_clusters,
        write_yolo_anchors,
    )
    from pydarknet.data.datafile import read_data_file
    from pydarknet.fileio import atomic_write

    width, height = args.width, args.height
    if args.write_cfg and not (width and height):
        from pydarknet.cfg import parse_cfg
        from pydarknet.netconfig import parse_net

        net = parse_net(parse_cfg(args.write_cfg)[0], "alexeyab")
        width, height = width or net.width, height or net.height
    if not width or not height or width <= 0 or height <= 0:
        raise DarknetError("set width and height: -width W -height H (or --write-cfg CFG)")
    sizes = _box_sizes(args)
    k = args.num_of_clusters
    clusters = kmeans_anchors(sizes.wh, k, seed=args.seed)
    scale = np.array([width, height], np.float64)
    anchors, boxes = clusters.anchors * scale, sizes.wh * scale
    try:
        classes = int(read_data_file(args.data).get("classes", 1))
    except ValueError:
        classes = 1  # load_box_sizes has already read the value
    counters = np.bincount(sizes.classes, minlength=max(classes, int(sizes.classes.max()) + 1)).tolist()
    line = format_anchors_pixels(anchors, width)
    print(alexeyab_report(k, width, height, sizes.images, len(boxes), clusters.iterations, counters,
                          mean_best_iou_percent(boxes, anchors), line), end="", flush=True)
    atomic_write("counters_per_class.txt", f"counters_per_class = {', '.join(map(str, counters))}".encode())
    atomic_write("anchors.txt", line.encode())
    if args.show:
        plot_cloud(boxes, clusters.assignment, anchors, width, height, "cloud.png")
    if args.plot:
        plot_clusters(boxes, clusters.assignment, anchors, args.plot, unit="pixels")
    if args.write_cfg:
        count = write_yolo_anchors(args.write_cfg, format_anchors_pixels(anchors, width, padded=False), k)
        print(f"wrote anchors= into the {count} [yolo] sections of {args.write_cfg}")
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
