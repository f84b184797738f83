"""Detections drawn on images (Darknet's draw_detections) and as JSON records."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pydarknet.detection import Detection
from pydarknet.image import draw_detections
from pydarknet.wordtree import Tree, path_to_root


def pixel_box(det: Detection, img_w: int, img_h: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) as draw_detections computes them: truncated to int, then clipped."""
    x, y, w, h = det.bbox
    left, right = int((x - w / 2.0) * img_w), int((x + w / 2.0) * img_w)
    top, bottom = int((y - h / 2.0) * img_h), int((y + h / 2.0) * img_h)
    return max(left, 0), max(top, 0), min(right, img_w - 1), min(bottom, img_h - 1)


def annotate(frame_bgr: np.ndarray, dets: Sequence[Detection], names: Sequence[str], num_classes: int) -> np.ndarray:
    """A copy of an 8-bit BGR image with Darknet-style boxes and labels."""
    h, w = frame_bgr.shape[:2]
    return draw_detections(frame_bgr, [pixel_box(d, w, h) for d in dets], [d.label(names) for d in dets],
                           [d.classes[0] for d in dets], num_classes)


def draw(image: np.ndarray, dets: Sequence[Detection], names: Sequence[str], num_classes: int) -> np.ndarray:
    """A CHW float image with Darknet-style boxes, as 8-bit BGR."""
    bgr = np.ascontiguousarray((np.clip(image, 0, 1) * np.float32(255)).astype(np.uint8)[::-1].transpose(1, 2, 0))
    return annotate(bgr, dets, names, num_classes)


def detection_records(dets: Sequence[Detection], names: Sequence[str], img_w: int, img_h: int,
                      tree: Tree | None = None) -> list[dict]:
    """JSON-ready records: one per (detection, class above thresh); with a WordTree, the class's path to the
    root."""
    records = []
    for d in dets:
        x, y, w, h = d.bbox
        left, top, right, bottom = pixel_box(d, img_w, img_h)
        for cls, prob in zip(d.classes, d.probs):
            rec = {"class_id": cls, "name": names[cls], "prob": prob, "objectness": d.objectness,
                   "bbox_relative": {"x": x, "y": y, "w": w, "h": h},
                   "bbox_pixels": {"left": left, "top": top, "right": right, "bottom": bottom},
                   "index": d.index}
            if tree is not None:
                rec["path"] = [names[c] for c in path_to_root(tree, cls)]
            records.append(rec)
    return records
