"""What detection produces: `Candidates` (one image's boxes and non-zero class probs, Darknet's detection
array in sparse form) and `Detection` (one printed detection, Darknet's `draw_detections` text)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    bbox: tuple[float, float, float, float]  # x, y, w, h (centre and size), relative to the image
    objectness: float
    classes: list[int]  # every class with prob > thresh, ascending
    probs: list[float]  # their probs
    index: int  # position in Darknet's detection array before NMS (region: anchor*H*W + row*W + col)

    def label(self, names: Sequence[str]) -> str:
        """The label Darknet draws: the class names joined by ", "."""
        return ", ".join(names[c] for c in self.classes)

    def lines(self, names: Sequence[str]) -> list[str]:
        """What `draw_detections` prints for this detection, one line per class."""
        return [class_line(names[c], p) for c, p in zip(self.classes, self.probs, strict=True)]


def class_line(name: str, prob: float) -> str:
    """Darknet's printed line for one class of a detection, `name: NN%` (both Darknets)."""
    # C: printf("%s: %.0f%%\n", name, prob*100) with a float prob: the product is rounded to float, and
    # %.0f rounds its exact binary value half-to-even (Python's float formatting does the same).
    return f"{name}: {float(np.float32(prob) * np.float32(100)):.0f}%"


def _empty(*shape: int, dtype: type = np.int64) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class Candidates:
    """One image's part of Darknet's detection array (`get_network_boxes`), sparse: the boxes with a non-zero
    objectness and their non-zero class probs as (box, class, prob) triples. Every prob Darknet leaves
    non-zero is > thresh, so these are all that NMS and the printed detections read (on a 9418-class output a
    few entries of an 867 x 9418 matrix). numpy arrays on the CPU.

    Before NMS the rows are in array order (`index` ascending); NMS reorders them into Darknet's final
    array order and drops the probs it zeroes. Triples are sorted by (box, cls)."""

    count: int  # length of Darknet's detection array: boxes with zero objectness included
    index: np.ndarray  # (M,) int64 array position (before NMS) of each row
    boxes: np.ndarray  # (M, 4) float32 x, y, w, h: relative to the image, or in pixels
    objectness: np.ndarray  # (M,) float32, non-zero before NMS (do_nms_obj zeroes the ones it suppresses)
    box: np.ndarray  # (P,) int64 row of each non-zero prob
    cls: np.ndarray  # (P,) int64
    prob: np.ndarray  # (P,) float32

    @classmethod
    def empty(cls, count: int = 0) -> Candidates:
        return cls(count, _empty(0), _empty(0, 4, dtype=np.float32), _empty(0, dtype=np.float32), _empty(0),
                   _empty(0), _empty(0, dtype=np.float32))

    @classmethod
    def merge(cls, parts: Sequence[Candidates]) -> Candidates:
        """Several heads' candidates as one array, in order (Darknet's get_network_boxes fills the array
        head after head)."""
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [p.count for p in parts])
        rows = np.cumsum([0] + [p.index.size for p in parts])
        return cls(int(offsets[-1]),
                   np.concatenate([p.index + o for p, o in zip(parts, offsets)]),
                   np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.objectness for p in parts]),
                   np.concatenate([p.box + r for p, r in zip(parts, rows)]),
                   np.concatenate([p.cls for p in parts]),
                   np.concatenate([p.prob for p in parts]))

    def rows(self, order: np.ndarray, keep: np.ndarray | None = None,
             objectness: np.ndarray | None = None) -> Candidates:
        """These candidates with their rows permuted by `order` (row r of the result is row order[r]), only
        the triples where `keep` is true, and optionally new objectness (in the new row order)."""
        keep = np.ones(self.box.size, dtype=bool) if keep is None else keep
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        box, cls, prob = rank[self.box[keep]], self.cls[keep], self.prob[keep]
        sort = np.lexsort((cls, box))
        return Candidates(self.count, self.index[order], self.boxes[order],
                          self.objectness[order] if objectness is None else objectness,
                          box[sort], cls[sort], prob[sort])

    def with_classes_below(self, classes: int) -> Candidates:
        """Only the probs of the first `classes` classes (Darknet's loops over fewer classes than the
        layer has, as validate_detector does for ImageNet)."""
        keep = self.cls < classes
        return Candidates(self.count, self.index, self.boxes, self.objectness, self.box[keep], self.cls[keep],
                          self.prob[keep])

    def detections(self) -> list[Detection]:
        """The rows that keep a prob, in order, as `Detection`s (classes ascending)."""
        starts = np.searchsorted(self.box, np.arange(self.index.size + 1))
        boxes, objectness, index = self.boxes.tolist(), self.objectness.tolist(), self.index.tolist()
        cls, prob = self.cls.tolist(), self.prob.tolist()
        return [Detection(tuple(boxes[r]), objectness[r], cls[lo:hi], prob[lo:hi], index[r])
                for r, (lo, hi) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist())) if hi > lo]


def darknet_lines(dets: Sequence[Detection], names: Sequence[str]) -> list[str]:
    """Darknet's `draw_detections` print for detections in array order (after NMS)."""
    return [line for d in dets for line in d.lines(names)]
