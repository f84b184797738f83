"""COCO mAP@[.5:.95] of detections against Darknet-format labels, through pycocotools (extra `coco`)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from pydarknet.errors import DarknetError

MISSING = "COCO mAP needs pycocotools: pip install 'pydarknet[coco]' (or pip install pycocotools)"


@dataclass
class CocoResult:
    map: float  # AP@[.5:.95], all areas, 100 detections per image (COCOeval stats[0])
    map50: float
    map75: float
    per_class: list[float]  # AP@[.5:.95] per class; nan for a class without ground truth


def require_pycocotools() -> None:
    """Fail before a long evaluation, with one line saying what to install."""
    try:
        import pycocotools.coco  # noqa: F401
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        raise DarknetError(MISSING) from None


def _xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def coco_map(dets: list[list[tuple[int, float, np.ndarray]]], truths: list[dict[int, np.ndarray]],
             n_images: int) -> CocoResult:
    """dets[c]: (image index, score, xyxy pixels); truths[c]: image index -> (K, 4) xyxy pixels."""
    require_pycocotools()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    classes = len(truths)
    annotations = []
    for c in range(classes):
        for img, boxes in sorted(truths[c].items()):
            for box in boxes:
                b = _xywh(box)
                # Ids start at 1: COCOeval marks "unmatched" with 0.
                annotations.append({"id": len(annotations) + 1, "image_id": img + 1, "category_id": c + 1,
                                    "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
    results = [{"image_id": img + 1, "category_id": c + 1, "bbox": _xywh(box), "score": float(score)}
               for c in range(classes) for img, score, box in dets[c]]
    if not results:  # loadRes cannot take an empty list
        has_truth = {a["category_id"] - 1 for a in annotations}
        return CocoResult(0.0, 0.0, 0.0, [0.0 if c in has_truth else float("nan") for c in range(classes)])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools narrates every step on stdout
        gt = COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(n_images)], "annotations": annotations,
                      "categories": [{"id": c + 1} for c in range(classes)]}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (iou, recall, class) at area all, maxDets 100
    per_class = []
    for c in range(classes):
        p = precision[:, :, c]
        per_class.append(float(p[p > -1].mean()) if np.any(p > -1) else float("nan"))
    stats = evaluator.stats
    return CocoResult(float(stats[0]), float(stats[1]), float(stats[2]), per_class)
