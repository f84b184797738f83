"""mAP of a detector on the `.data` file's `valid=` list: VOC2010+ area and VOC2007 11-point AP at one IoU,
optionally COCO mAP@[.5:.95] (pycocotools), from the detections `detector valid` writes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pydarknet.data.datafile import read_data_file, read_data_names, read_list, resolve_path
from pydarknet.data.labels import label_path, read_labels
from pydarknet.errors import DarknetError
from pydarknet.evaluate.coco_eval import CocoResult, coco_map, require_pycocotools
from pydarknet.evaluate.pr_plot import safe_name, save_pr_curve
from pydarknet.evaluate.valid import VALID_NMS, VALID_THRESH, iter_detections, net_classes
from pydarknet.evaluate.voc_map import ClassAP, average_precision, evaluate_class, xywh_to_xyxy


@dataclass
class MapResult:
    per_class: list[ClassAP]  # VOC2010+ area AP (and the PR curve) per class
    names: list[str]
    iou: float = 0.5
    coco: CocoResult | None = None

    @property
    def mean_ap(self) -> float:
        present = [c.ap for c in self.per_class if c.n_truth > 0]
        return float(np.mean(present)) if present else 0.0

    @property
    def ap07(self) -> list[float]:
        """VOC2007 11-point AP per class, from the same PR curves."""
        return [average_precision(c.recall, c.precision, eleven_point=True) for c in self.per_class]

    @property
    def mean_ap07(self) -> float:
        present = [ap for ap, c in zip(self.ap07, self.per_class) if c.n_truth > 0]
        return float(np.mean(present)) if present else 0.0

    def table(self) -> str:
        iou = f"{self.iou:g}".lstrip("0")
        head = f"{'class':>20}  {'AP':>7}  {'AP07':>7}"
        head += f"  {'AP.5:.95':>8}" if self.coco else ""
        lines = [head + f"  {'truths':>6}  {'dets':>6}"]
        for k, (name, c, ap07) in enumerate(zip(self.names, self.per_class, self.ap07)):
            row = f"{name:>20}  {c.ap * 100:6.2f}%  {ap07 * 100:6.2f}%"
            if self.coco:
                ap = self.coco.per_class[k]
                row += f"  {'-':>8}" if math.isnan(ap) else f"  {ap * 100:7.2f}%"
            lines.append(row + f"  {c.n_truth:6d}  {c.n_detections:6d}")
        lines.append(f"mean average precision (mAP@{iou}) = {self.mean_ap:f}, or {self.mean_ap * 100:.2f} %")
        lines.append(f"VOC2007 11-point mAP@{iou} = {self.mean_ap07:f}, or {self.mean_ap07 * 100:.2f} %")
        if self.coco:
            lines.append(f"COCO mAP@[.5:.95] = {self.coco.map:f}, AP@.5 = {self.coco.map50:f}, "
                         f"AP@.75 = {self.coco.map75:f}")
        return "\n".join(lines)

    def save_pr_curves(self, out_dir: str | Path) -> list[Path]:
        """One PNG per class: `<out_dir>/pr_<index>_<name>.png`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, (name, c, ap07) in enumerate(zip(self.names, self.per_class, self.ap07)):
            path = out / f"pr_{k}_{safe_name(name)}.png"
            save_pr_curve(path, c.recall, c.precision, f"{name}: AP {c.ap * 100:.2f}%  AP07 {ap07 * 100:.2f}%")
            paths.append(path)
        return paths


def evaluate_map(net, images: list[str], names: list[str], *, thresh: float = VALID_THRESH,  # noqa: ANN001
                 iou: float = 0.5, nms: float = VALID_NMS, relative_to: str | Path | None = None,
                 progress: bool = True, coco: bool = False) -> MapResult:
    """Detect on every image as `detector valid` does (letterboxed) and score against its labels."""
    if coco:
        require_pycocotools()
    classes = net_classes(net)
    dets: list[list[tuple[int, float, np.ndarray]]] = [[] for _ in range(classes)]
    truths: list[dict[int, np.ndarray]] = [{} for _ in range(classes)]
    for d in iter_detections(net, images, classes, relative_to, thresh=thresh, nms=nms, progress=progress):
        path = resolve_path(d.name, relative_to)
        labels = read_labels(resolve_path(label_path(str(path)), relative_to), "skip", classes).boxes
        scale = [d.width, d.height, d.width, d.height]
        for cls in range(classes):
            truths[cls][d.index] = xywh_to_xyxy(labels[labels[:, 0] == cls, 1:5]) * scale
        c = d.candidates
        boxes = xywh_to_xyxy(c.boxes)
        for r, k, p in zip(c.box.tolist(), c.cls.tolist(), c.prob.tolist()):
            dets[k].append((d.index, p, boxes[r]))
    per_class = [evaluate_class(dets[c], truths[c], iou) for c in range(classes)]
    return MapResult(per_class, names[:classes], iou, coco_map(dets, truths, len(images)) if coco else None)


def map_from_data_file(net, data_file: str | Path, thresh: float = VALID_THRESH, iou: float = 0.5,  # noqa: ANN001
                       progress: bool = True, coco: bool = False) -> MapResult:
    options = read_data_file(data_file)
    if "valid" not in options:
        raise DarknetError("has no valid= list", data_file)
    valid = resolve_path(options["valid"], data_file)
    names = read_data_names(options, net_classes(net))
    return evaluate_map(net, read_list(valid), names, thresh=thresh, iou=iou, relative_to=valid, progress=progress,
                        coco=coco)
