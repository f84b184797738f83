"""AlexeyAB's `detector map` (validate_detector_map) on a network: the `.data` file's valid list through the one
Detector pipeline as that command runs it (the [net]'s letter_box else a plain resize, the last head's NMS kind,
detection threshold .005, NMS .45, boxes relative to the image), each image's label boxes and those of the
`difficult=` list's image at the same position, scored by `alexeyab_map`. `detector train -map` calls it too."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pydarknet.data.datafile import read_data_file, read_data_names, read_list, resolve_path
from pydarknet.data.labels import label_path, read_labels
from pydarknet.errors import DarknetError
from pydarknet.evaluate.alexeyab_map import ImageResult, MapReport, alexeyab_map
from pydarknet.evaluate.valid import VALID_NMS, VALID_THRESH, iter_detections, net_classes

CONF_THRESH = 0.25  # -thresh: the confidence of the precision/recall/F1 and average-IoU lines


def _labels(image: str, relative_to: str | Path | None, classes: int) -> np.ndarray:
    path = resolve_path(label_path(str(resolve_path(image, relative_to))), relative_to)
    return read_labels(path, "skip", classes).boxes


def image_results(net, images: Sequence[str], relative_to: str | Path | None = None,  # noqa: ANN001
                  difficult: Sequence[str] | None = None, progress: bool = True) -> Iterator[ImageResult]:
    """Each valid image's detections (after NMS, Darknet's order) and label boxes, as validate_detector_map
    collects them."""
    classes = net_classes(net)
    for d in iter_detections(net, images, classes, relative_to, thresh=VALID_THRESH, nms=VALID_NMS, progress=progress,
                             relative=True):
        c = d.candidates
        probs = np.zeros((len(c.boxes), classes), np.float32)
        probs[c.box, c.cls] = c.prob
        hard = _labels(difficult[d.index], relative_to, classes) if difficult is not None else None
        yield ImageResult(c.boxes, probs, _labels(d.name, relative_to, classes), hard)


def map_report(net, data_file: str | Path, conf_thresh: float = CONF_THRESH, iou_thresh: float = 0.5,  # noqa: ANN001
               points: int = 0, progress: bool = True) -> tuple[MapReport, list[str]]:
    """validate_detector_map for the `.data` file: its report and the class names."""
    options = read_data_file(data_file)
    if "valid" not in options:
        raise DarknetError("has no valid= list", data_file)
    valid = resolve_path(options["valid"], data_file)
    images = read_list(valid)
    difficult = None
    if "difficult" in options:
        difficult = read_list(resolve_path(options["difficult"], data_file))
        if len(difficult) < len(images):
            raise DarknetError(f"the difficult= list has {len(difficult)} images, the valid= list {len(images)}",
                               data_file, options.lines.get("difficult"))
    classes = net_classes(net)
    names = read_data_names(options, classes)
    if len(names) != classes:  # AlexeyAB stops here too
        raise DarknetError(f"names= has {len(names)} names, the network's last detection layer has "
                           f"classes={classes}", data_file, options.lines.get("names"))
    report = alexeyab_map(image_results(net, images, valid, difficult, progress), classes, iou_thresh=iou_thresh,
                          conf_thresh=conf_thresh, points=points)
    return report, names
