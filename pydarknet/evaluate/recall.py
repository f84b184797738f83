"""Darknet's `detector recall` (validate_detector_recall): how many labelled boxes the region proposals find.

As in C (final commit): plain resize to the network size (no letterbox), `get_network_boxes(thresh .001,
relative=1)`, `do_nms_obj(.4)`; a proposal is a box with objectness > .001; a truth is found when its best
IoU with a proposal is > .5. After each image it prints, to stderr,
`"%5d %5d %5d\\tRPs/Img: %.2f\\tIOU: %.2f%%\\tRecall:%.2f%%"` (image index, found, truths so far, proposals
per image, mean best IoU, recall), with C's float/double arithmetic. Darknet reads the hard-coded
data/coco_val_5k.list; pydarknet reads the .data file's valid= list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from pydarknet.boxes import box_iou
from pydarknet.data.labels import label_path, read_labels
from pydarknet.detector import Detector
from pydarknet.paths import resolve_path

RECALL_THRESH = 0.001
RECALL_IOU = 0.5
RECALL_NMS = 0.4
_F32 = np.float32


class RecallCounter:
    """The running totals of validate_detector_recall and the line it prints after each image."""

    def __init__(self) -> None:
        self.images = self.total = self.correct = self.proposals = 0
        self.avg_iou = _F32(0)  # a C float: summed in float32

    def add(self, boxes: torch.Tensor, objectness: torch.Tensor, truth: torch.Tensor) -> str:
        """boxes (N, 4) and truth (K, 4) relative xywh (float32), objectness (N,) after NMS."""
        live = objectness > float(_F32(RECALL_THRESH))
        self.proposals += int(live.sum())
        proposals = boxes[live]
        if len(truth) and len(proposals):
            ious = box_iou(proposals[None, :, :], truth[:, None, :])  # (K, proposals)
            # C keeps the first IoU > best (from 0): a NaN IoU (empty union) never wins.
            best = torch.nan_to_num(ious, nan=0.0).clamp_min(0).amax(1).numpy()
        else:
            best = np.zeros(len(truth), _F32)
        for iou in best:
            self.avg_iou = _F32(self.avg_iou + _F32(iou))
        self.correct += int((best > _F32(RECALL_IOU)).sum())
        self.total += len(truth)
        self.images += 1
        return self.line()

    def line(self) -> str:
        rps = _F32(self.proposals) / _F32(self.images)  # (float)proposals/(i+1)
        if self.total:
            iou = f"{float(_F32(self.avg_iou * _F32(100)) / _F32(self.total)):.2f}"  # float*int/int
            recall = f"{100.0 * self.correct / self.total:.2f}"  # 100.*correct/total: double
        else:
            iou = recall = "-nan"  # what glibc prints for x86's 0/0
        return (f"{self.images - 1:5d} {self.correct:5d} {self.total:5d}\tRPs/Img: {float(rps):.2f}"
                f"\tIOU: {iou}%\tRecall:{recall}%")


def recall_lines(net, images: Sequence[str], relative_to: str | Path | None = None) -> Iterator[str]:  # noqa: ANN001
    """One line per listed image, as validate_detector_recall prints them."""
    detector = Detector(net, thresh=RECALL_THRESH, nms=RECALL_NMS, command="recall", batch_size=1)
    counter = RecallCounter()
    paths = [resolve_path(name, relative_to) for name in images]
    for path, r in zip(paths, detector.run(paths)):
        # read_boxes takes every line's box whatever its class.
        truth = read_labels(resolve_path(label_path(str(path)), relative_to)).boxes[:, 1:5]
        c = r.candidates
        yield counter.add(torch.from_numpy(c.boxes), torch.from_numpy(c.objectness), torch.from_numpy(truth))
