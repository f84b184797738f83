"""Darknet's `detector valid` (validate_detector): the valid list through the network and its result files.

As in C: letterboxed input, `get_network_boxes(net, w, h, .005, .5, map, relative=0)` (boxes in pixels of
the original image), `do_nms_sort(.45)` over `classes` (200 for eval=imagenet), then one line per
(detection, class with a non-zero prob) in the array order NMS leaves, written as VOC comp4 files, a COCO
json or ImageNet detection lines by the .data file's `eval=`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from pydarknet.data.datafile import DataOptions, read_data_file, read_data_names, read_list, resolve_path
from pydarknet.detection import Candidates
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError
from pydarknet.wordtree import read_map

VALID_THRESH = 0.005
VALID_HIER = 0.5
VALID_NMS = 0.45
IMAGENET_CLASSES = 200  # validate_detector sets classes = 200 for eval=imagenet
# examples/detector.c: COCO category id of each of the 80 classes.
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
            61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
EVALS = ("voc", "coco", "imagenet")
_F32 = np.float32
_FLUSH_LINES = 200_000  # buffered VOC lines before they are appended to their files


class ImageDetections(NamedTuple):
    index: int  # position in the valid list
    name: str  # the path as listed (Darknet derives ids from this string)
    width: int
    height: int
    candidates: Candidates  # boxes in pixels, in the order NMS leaves them; their non-zero probs


def net_classes(net) -> int:  # noqa: ANN001
    """The class count of the network's (last) detection layer, or a DarknetError for a net without one."""
    if not net.heads:
        raise DarknetError("the network has no detection layer ([region] or [yolo]) to detect with", net.cfg_path)
    return net.heads[-1][1].classes


def iter_detections(net, images: Sequence[str], classes: int | None = None,  # noqa: ANN001
                    relative_to: str | Path | None = None, thresh: float = VALID_THRESH,
                    nms: float = VALID_NMS, class_map: np.ndarray | None = None, batch_size: int | None = None,
                    progress: bool = True) -> Iterator[ImageDetections]:
    """Each listed image's detections as validate_detector computes them (`classes`: default l.classes)."""
    detector = Detector(net, thresh=thresh, hier_thresh=VALID_HIER, nms=nms, command="valid", relative=False,
                        class_map=class_map, classes=classes, batch_size=batch_size)
    net.eval()
    paths = (resolve_path(name, relative_to) for name in images)
    bar = tqdm(total=len(images), disable=not progress, unit="img", file=sys.stderr)
    for k, (name, r) in enumerate(zip(images, detector.run(paths))):
        yield ImageDetections(k, name, r.width, r.height, r.candidates)
        bar.update()
    bar.close()


def _corners(boxes: np.ndarray, offset: float) -> tuple[np.ndarray, ...]:
    """C: `float xmin = b.x - b.w/2. + offset;` (double arithmetic, stored as float)."""
    b = boxes.astype(np.float64)
    half_w, half_h = b[:, 2] / 2.0, b[:, 3] / 2.0
    return tuple(((c + offset) if offset else c).astype(_F32)
                 for c in (b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h))


def _clamped(boxes: np.ndarray, w: int, h: int, low: float, offset: float) -> list[list[float]]:
    xmin, ymin, xmax, ymax = _corners(boxes, offset)
    xmin, ymin = np.where(xmin < low, _F32(low), xmin), np.where(ymin < low, _F32(low), ymin)
    xmax, ymax = np.where(xmax > w, _F32(w), xmax), np.where(ymax > h, _F32(h), ymax)
    return np.stack([xmin, ymin, xmax, ymax], 1).tolist()


def _hits(c: Candidates) -> Iterator[tuple[int, int, float]]:
    """(row, class, prob) for every non-zero prob, row by row, classes ascending (C: `if (prob[j])`)."""
    return zip(c.box.tolist(), c.cls.tolist(), c.prob.tolist())


def voc_lines(image_id: str, c: Candidates, w: int, h: int) -> list[tuple[int, str]]:
    """print_detector_detections: (class, `id prob xmin ymin xmax ymax`), 1-based pixels clamped to [1, w/h]."""
    corners = _clamped(c.boxes, w, h, 1.0, 1.0)
    return [(j, f"{image_id} {p:f} {corners[i][0]:f} {corners[i][1]:f} {corners[i][2]:f} {corners[i][3]:f}")
            for i, j, p in _hits(c)]


def coco_records(image_id: int, c: Candidates, w: int, h: int) -> list[str]:
    """print_cocos: one json object per (detection, class), bbox x, y, w, h clamped to the image; the class
    becomes its COCO category id (at most 80 classes)."""
    corners = _clamped(c.boxes, w, h, 0.0, 0.0)
    records = []
    for row, j, p in _hits(c):
        xmin, ymin, xmax, ymax = corners[row]
        bw, bh = float(_F32(xmax) - _F32(xmin)), float(_F32(ymax) - _F32(ymin))  # float - float in C
        records.append(f'{{"image_id":{image_id}, "category_id":{COCO_IDS[j]}, '
                       f'"bbox":[{xmin:f}, {ymin:f}, {bw:f}, {bh:f}], "score":{p:f}}}')
    return records


def imagenet_lines(image_number: int, c: Candidates, w: int, h: int) -> list[str]:
    """print_imagenet_detections: `image_number class+1 prob xmin ymin xmax ymax`, pixels clamped to [0, w/h]."""
    corners = _clamped(c.boxes, w, h, 0.0, 0.0)
    return [f"{image_number} {j + 1} {p:f} {corners[i][0]:f} {corners[i][1]:f} {corners[i][2]:f} {corners[i][3]:f}"
            for i, j, p in _hits(c)]


def basecfg(path: str) -> str:
    """Darknet's basecfg: the part of the last path component before its first '.'."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def coco_image_id(path: str) -> int:
    """get_coco_image_id: atoi of what follows the last '_' of the path, else its last '/'."""
    cut = path.rfind("_")
    if cut < 0:
        cut = path.rfind("/")  # C crashes when neither is there; the whole name is read then
    number = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", path[cut + 1:])  # atoi
    return int(number.group(1)) if number else 0


def eval_type(options: DataOptions) -> str:
    kind = options.get("eval", "voc")
    if kind not in EVALS:
        # Darknet treats any other value as voc; a typo there is more likely than intent.
        raise DarknetError(f"eval={kind}: expected one of {', '.join(EVALS)}", options.path,
                           options.lines.get("eval"))
    return kind


def valid_map(options: DataOptions, net) -> np.ndarray | None:  # noqa: ANN001
    """The .data file's map= (ImageNet 200 -> WordTree ids); as in C it only matters with a tree."""
    if "map" not in options or getattr(net.heads[-1][1], "tree", None) is None:
        return None
    class_map = read_map(resolve_path(options["map"], options.path))
    classes = net_classes(net)
    if len(class_map) and (class_map.min() < 0 or class_map.max() >= classes):
        raise DarknetError(f"map={options['map']}: ids must be in [0, {classes})", options.path,
                           options.lines["map"])
    return class_map


class _VocFiles:
    """One comp4 file per class: all created (empty) up front as in C, lines appended in batches so that
    9418 classes need no 9418 open files."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.pending: dict[int, list[str]] = {}
        self.count = 0
        for path in paths:
            path.write_text("")

    def add(self, lines: list[tuple[int, str]]) -> None:
        for j, line in lines:
            self.pending.setdefault(j, []).append(line)
        self.count += len(lines)
        if self.count >= _FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        for j, lines in self.pending.items():
            with open(self.paths[j], "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        self.pending, self.count = {}, 0


def validate_detector(net, data_file: str | Path, outfile: str | None = None,  # noqa: ANN001
                      thresh: float = VALID_THRESH, progress: bool = True) -> list[Path]:
    """Write Darknet's result files for the .data file's valid= list under its results= directory
    (default `results`, relative to the working directory as in Darknet). Returns the files written.
    Darknet hard-codes `thresh` (.005); a class name occurring twice shares one file."""
    options = read_data_file(data_file)
    if "valid" not in options:
        raise DarknetError("has no valid= list", data_file)
    kind = eval_type(options)
    classes_of_net = net_classes(net)
    valid = resolve_path(options["valid"], data_file)
    images = read_list(valid)
    class_map = valid_map(options, net)
    classes = IMAGENET_CLASSES if kind == "imagenet" else classes_of_net
    if classes > classes_of_net:
        raise DarknetError(f"eval=imagenet writes {IMAGENET_CLASSES} classes; the network has {classes_of_net}",
                           data_file, options.lines.get("eval"))
    if kind == "coco" and classes > len(COCO_IDS):
        raise DarknetError(f"eval=coco maps {len(COCO_IDS)} classes to COCO ids; the network has {classes}",
                           data_file, options.lines.get("eval"))
    results = Path(options.get("results", "results"))
    results.mkdir(parents=True, exist_ok=True)
    detections = iter_detections(net, images, classes, valid, thresh, class_map=class_map, progress=progress)
    if kind == "voc":
        names = read_data_names(options, classes)
        prefix = "comp4_det_test_" if outfile is None else outfile
        files = _VocFiles([results / f"{prefix}{names[j]}.txt" for j in range(classes)])
        for d in detections:
            files.add(voc_lines(basecfg(d.name), d.candidates, d.width, d.height))
        files.flush()
        return files.paths
    suffix = ".json" if kind == "coco" else ".txt"
    path = results / f"{(outfile or ('coco_results' if kind == 'coco' else 'imagenet-detection'))}{suffix}"
    with open(path, "w", encoding="utf-8") as f:
        if kind == "imagenet":
            for d in detections:
                f.writelines(line + "\n" for line in imagenet_lines(d.index + 1, d.candidates, d.width, d.height))
            return [path]
        # C writes "[\n", each record + ",\n", then seeks back over the last ",\n" and writes "\n]\n".
        f.write("[\n")
        first = True
        for d in detections:
            for record in coco_records(coco_image_id(d.name), d.candidates, d.width, d.height):
                f.write(record if first else ",\n" + record)
                first = False
        f.write("\n]\n")
    return [path]
