"""VOC-style average precision per class at an IoU threshold, and its mean (vectorised numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassAP:
    ap: float
    precision: np.ndarray
    recall: np.ndarray
    n_truth: int
    n_detections: int


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                     b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in `a` with every one in `b`."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False) -> float:
    """VOC2010+ area under the interpolated PR curve, or the VOC2007 11-point version."""
    if eleven_point:
        points = np.linspace(0, 1, 11)
        return float(np.mean([precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in points]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def evaluate_class(dets: list[tuple[int, float, np.ndarray]], truths: dict[int, np.ndarray],
                   iou_thresh: float = 0.5, eleven_point: bool = False) -> ClassAP:
    """dets: (image id, score, xyxy box); truths: image id -> (K, 4) xyxy boxes of this class."""
    n_truth = sum(len(t) for t in truths.values())
    if not dets:
        return ClassAP(0.0, np.zeros(0), np.zeros(0), n_truth, 0)
    order = np.argsort([-d[1] for d in dets], kind="stable")
    used = {img: np.zeros(len(t), dtype=bool) for img, t in truths.items()}
    tp = np.zeros(len(dets))
    for rank, k in enumerate(order):
        img, _, box = dets[k]
        gt = truths.get(img)
        if gt is None or len(gt) == 0:
            continue
        ious = iou_matrix(box[None], gt)[0]
        best = int(np.argmax(ious))
        if ious[best] >= iou_thresh and not used[img][best]:
            used[img][best] = True
            tp[rank] = 1
    ctp = np.cumsum(tp)
    recall = ctp / max(n_truth, 1)
    precision = ctp / np.arange(1, len(dets) + 1)
    return ClassAP(average_precision(recall, precision, eleven_point), precision, recall, n_truth, len(dets))
