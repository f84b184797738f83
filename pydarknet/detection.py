"""Final detections and Darknet's `draw_detections` text (`name: NN%` per class above thresh)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Detection:
    bbox: tuple[float, float, float, float]  # x, y, w, h (centre and size), relative to the image
    objectness: float
    classes: list[int]  # every class with prob > thresh, ascending
    probs: list[float]  # their probs
    index: int  # Darknet's detection index before NMS: anchor*H*W + row*W + col

    def label(self, names: Sequence[str]) -> str:
        """The label Darknet draws: the class names joined by ", "."""
        return ", ".join(names[c] for c in self.classes)

    def lines(self, names: Sequence[str]) -> list[str]:
        """What `draw_detections` prints for this detection, one line per class."""
        return [_line(names[c], p) for c, p in zip(self.classes, self.probs, strict=True)]


def _line(name: str, prob: float) -> str:
    # C: printf("%s: %.0f%%\n", name, prob*100) with a float prob: the product is rounded to float, and
    # %.0f rounds its exact binary value half-to-even (Python's float formatting does the same).
    return f"{name}: {float(np.float32(prob) * np.float32(100)):.0f}%"


def _above(probs: Tensor, thresh: float) -> tuple[Tensor, Tensor, Tensor]:
    """Rows with some prob > thresh (thresh as a C float), their probs, and their `> thresh` mask.

    A row max (fast, contiguous) picks the candidate rows first: 9k-class outputs are mostly zero.
    `~(max <= t)` keeps NaN rows as candidates, so the exact test still decides them."""
    t = float(np.float32(thresh))
    rows = torch.nonzero(~(probs.amax(1) <= t))[:, 0]
    sub = probs.index_select(0, rows)
    return rows, sub, sub > t


def detections(boxes: Tensor, objectness: Tensor, probs: Tensor, index: Tensor,
               thresh: float) -> list[Detection]:
    """The rows with some prob > thresh, in array order, as `Detection`s."""
    rows, sub, above = _above(probs, thresh)
    found = [Detection(tuple(b), o, [], [], i) for b, o, i in
             zip(boxes[rows].tolist(), objectness[rows].tolist(), index[rows].tolist(), strict=True)]
    for (r, c), p in zip(above.nonzero().tolist(), sub[above].tolist(), strict=True):
        found[r].classes.append(c)
        found[r].probs.append(p)
    return [d for d in found if d.classes]


def darknet_lines(probs: Tensor, names: Sequence[str], thresh: float) -> list[str]:
    """Darknet's `draw_detections` print for (N, classes) probs in array order (after NMS)."""
    _, sub, above = _above(probs, thresh)
    classes = above.nonzero()[:, 1].tolist()  # row-major: detection by detection, classes ascending
    return [_line(names[c], p) for c, p in zip(classes, sub[above].tolist(), strict=True)]
