"""AlexeyAB's `detector map` report (validate_detector_map in src/detector.c) as pure functions: given each
validation image's detections (after NMS, Darknet's order) and its label boxes, the per-class AP lines, the
precision/recall/F1 and average-IoU lines at the confidence threshold, and `mean average precision
(mAP@0.50)`, with `-iou_thresh` and `-points` (0: area under the curve at every unique recall, 11: VOC2007,
101: COCO).

Its semantics, kept here: a detection matches the label box of its class with the highest IoU above
iou_thresh; the first detection of a box (by probability, over all images) is the true positive, later ones
false positives; a detection matching only a `difficult=` box is dropped from the AP but still counted as a
false positive at the confidence threshold; at the threshold, a box already matched by an earlier detection
of the same image (of any probability) makes the next one a false positive; the mAP is the mean over all
classes, those without label boxes included (AP 0). IoUs and the threshold counts are float32, as in C.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from pydarknet.boxes import box_iou_alexeyab
from pydarknet.errors import DarknetError

_F32 = np.float32


@dataclass
class ImageResult:
    """One validation image: detections and label boxes, all relative to the image (x, y, w, h centre)."""

    boxes: np.ndarray  # (N, 4) detection boxes
    probs: np.ndarray  # (N, classes) class probabilities, 0 where under the detection threshold
    truths: np.ndarray  # (K, 5) label rows [class, x, y, w, h]
    difficult: np.ndarray | None = None  # (K2, 5) rows of the `difficult=` list's label file


def _best_match(iou: np.ndarray, det_class: np.ndarray, truth_class: np.ndarray,
                thresh: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: the first truth of its class with the highest IoU > thresh (-1: none), and that IoU."""
    allowed = (truth_class[None, :] == det_class[:, None]) & (iou > thresh)
    if not iou.shape[1]:
        return np.full(len(det_class), -1), np.zeros(len(det_class), _F32)
    masked = np.where(allowed, iou, _F32(-1))
    best = masked.argmax(1)
    found = allowed.any(1)
    return np.where(found, best, -1), np.where(found, masked.max(1), _F32(0)).astype(_F32)


@dataclass
class MapReport:
    """validate_detector_map's numbers; `lines(names)` is what it prints."""

    ap: list[float]  # per class
    tp: list[int]  # per class, at the confidence threshold
    fp: list[int]
    truths: list[int]  # label boxes per class
    detections: int
    conf_thresh: float
    iou_thresh: float
    points: int
    tp_total: int = 0
    fp_total: int = 0
    avg_iou: float = 0.0  # over the thresholded true and false positives (Darknet divides by both)
    precision: float = field(init=False)
    recall: float = field(init=False)
    f1: float = field(init=False)

    def __post_init__(self) -> None:
        tp, fp, total = _F32(self.tp_total), _F32(self.fp_total), _F32(sum(self.truths))
        with np.errstate(divide="ignore", invalid="ignore"):
            p = tp / (tp + fp)
            r = tp / (tp + (total - tp))
            self.precision, self.recall = float(p), float(r)
            self.f1 = float(_F32(2) * p * r / (p + r))

    @property
    def mean_ap(self) -> float:
        return sum(self.ap) / len(self.ap) if self.ap else 0.0

    def lines(self, names: list[str]) -> list[str]:
        """The report after the progress lines, line by line (blank lines included)."""
        if len(names) < len(self.ap):
            raise DarknetError(f"{len(names)} names for {len(self.ap)} classes")
        out = ["", f" detections_count = {self.detections}, unique_truth_count = {sum(self.truths)}  "]
        for i, ap in enumerate(self.ap):
            out.append(f"class_id = {i}, name = {names[i]}, ap = {ap * 100:2.2f}%   \t "
                       f"(TP = {self.tp[i]}, FP = {self.fp[i]}) ")
        conf = float(_F32(self.conf_thresh))
        out += ["", f" for conf_thresh = {conf:1.2f}, precision = {_c(self.precision, '1.2f')}, "
                    f"recall = {_c(self.recall, '1.2f')}, F1-score = {_c(self.f1, '1.2f')} ",
                f" for conf_thresh = {conf:0.2f}, TP = {self.tp_total}, FP = {self.fp_total}, "
                f"FN = {sum(self.truths) - self.tp_total}, average IoU = {self.avg_iou * 100:2.2f} % ", ""]
        iou = float(_F32(self.iou_thresh))
        how = f"used {self.points} Recall-points " if self.points else "used Area-Under-Curve for each unique Recall "
        out += [f" IoU threshold = {iou * 100:2.0f} %, {how}",
                f" mean average precision (mAP@{iou:0.2f}) = {self.mean_ap:f}, or {self.mean_ap * 100:2.2f} % "]
        return out


def _c(value: float, spec: str) -> str:
    """printf of a float: x86's 0/0 is a negative NaN, which glibc prints as -nan."""
    return "-nan" if math.isnan(value) else f"{value:{spec}}"


def average_precision(recall: np.ndarray, precision: np.ndarray, points: int) -> float:
    """One class's AP from its precision/recall after each of its detections (in rank order).

    points=0: the area under the curve, each recall step times the best precision at that recall or later,
    summed from the last step to the first as Darknet does; points=N: the mean over N evenly spaced recall
    levels of the best precision at that recall or higher."""
    if points == 0:
        best = np.maximum.accumulate(precision[::-1])[::-1]
        steps = np.diff(np.concatenate([[0.0], recall])) * best
        return float(np.cumsum(steps[::-1])[-1]) if len(steps) else 0.0
    total = 0.0
    for point in range(points):
        reached = recall >= point * 1.0 / (points - 1)
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / points


def alexeyab_map(images: Iterable[ImageResult], classes: int, iou_thresh: float = 0.5, conf_thresh: float = 0.25,
                 points: int = 0) -> MapReport:
    """validate_detector_map over the images' detections and labels."""
    if points < 0 or points == 1:
        raise DarknetError(f"-points {points}: use 0 (area under the curve), 11 (VOC2007) or 101 (COCO)")
    iou_t, conf_t = _F32(iou_thresh), _F32(conf_thresh)
    kept_prob, kept_class, kept_truth = [], [], []  # the detections of the PR curves (global truth index)
    truth_counts = np.zeros(classes, np.int64)
    tp, fp = np.zeros(classes, np.int64), np.zeros(classes, np.int64)
    tp_ious: list[np.ndarray] = []
    offset = 0  # unique_truth_count before this image
    for image in images:
        truths = np.asarray(image.truths, np.float32).reshape(-1, 5)
        truth_class = truths[:, 0].astype(np.int64)
        if ((truth_class < 0) | (truth_class >= classes)).any():
            raise DarknetError(f"a label box has a class outside [0, {classes})")
        truth_counts += np.bincount(truth_class, minlength=classes)
        probs = np.asarray(image.probs, np.float32).reshape(len(image.boxes), classes)
        rows, cols = np.nonzero(probs > 0)  # box-major, class-minor: Darknet's loop order
        prob = probs[rows, cols]
        boxes = np.asarray(image.boxes, np.float32).reshape(-1, 4)[rows]
        match, best_iou = _best_match(box_iou_alexeyab(boxes[:, None], truths[None, :, 1:5]), cols, truth_class, iou_t)
        dropped = np.zeros(len(rows), bool)
        if image.difficult is not None and len(image.difficult):
            hard = np.asarray(image.difficult, np.float32).reshape(-1, 5)
            hard_iou = box_iou_alexeyab(boxes[:, None], hard[None, :, 1:5])
            hard_match, _ = _best_match(hard_iou, cols, hard[:, 0].astype(np.int64), iou_t)
            dropped = (match < 0) & (hard_match >= 0)
        # At the threshold a box counts once per image, for the first kept detection that matches it.
        first = np.zeros(len(rows), bool)
        kept = np.flatnonzero(~dropped & (match >= 0))
        _, at = np.unique(match[kept], return_index=True)
        first[kept[at]] = True
        above = prob > conf_t
        hit = above & first
        np.add.at(tp, cols[hit], 1)
        np.add.at(fp, cols[above & ~first], 1)
        tp_ious.append(best_iou[hit])
        keep = ~dropped
        kept_prob.append(prob[keep])
        kept_class.append(cols[keep])
        kept_truth.append(np.where(match[keep] >= 0, match[keep] + offset, -1))
        offset += len(truths)
    prob = np.concatenate(kept_prob) if kept_prob else np.zeros(0, _F32)
    cls = np.concatenate(kept_class) if kept_class else np.zeros(0, np.int64)
    truth = np.concatenate(kept_truth) if kept_truth else np.zeros(0, np.int64)
    order = np.argsort(-prob, kind="stable")  # qsort by probability (glibc's merge sort keeps ties in order)
    cls, truth = cls[order], truth[order]
    # Ranked: the first detection of a label box is its true positive, any later one a false positive.
    is_tp = np.zeros(len(truth), bool)
    matched = np.flatnonzero(truth >= 0)
    _, at = np.unique(truth[matched], return_index=True)
    is_tp[matched[at]] = True
    ap = []
    for c in range(classes):
        mine = cls == c
        ctp = np.cumsum(is_tp[mine])
        cfp = np.cumsum(~is_tp[mine])
        precision = ctp / (ctp + cfp) if len(ctp) else np.zeros(0)
        recall = ctp / truth_counts[c] if truth_counts[c] else np.zeros(len(ctp))
        ap.append(average_precision(recall.astype(np.float64), precision.astype(np.float64), points)
                  if len(cls) else 0.0)
    ious = np.concatenate(tp_ious) if tp_ious else np.zeros(0, _F32)
    iou_sum = np.cumsum(ious, dtype=_F32)[-1] if len(ious) else _F32(0)
    counted = int(tp.sum() + fp.sum())
    avg_iou = float(iou_sum / _F32(counted)) if counted else float(iou_sum)
    return MapReport(ap, tp.tolist(), fp.tolist(), truth_counts.tolist(), len(prob), conf_thresh, iou_thresh,
                     points, int(tp.sum()), int(fp.sum()), avg_iou)
