"""mAP of a detector on the `.data` file's `valid=` list (VOC style, IoU .5 by default)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pydarknet.data.datafile import read_data_file, read_data_names, read_list, resolve_path
from pydarknet.data.labels import label_path, read_labels
from pydarknet.detect import decode_detections, network_input
from pydarknet.errors import DarknetError
from pydarknet.evaluate.voc_map import ClassAP, evaluate_class, xywh_to_xyxy
from pydarknet.image import load_image


@dataclass
class MapResult:
    per_class: list[ClassAP]
    names: list[str]

    @property
    def mean_ap(self) -> float:
        present = [c.ap for c in self.per_class if c.n_truth > 0]
        return float(np.mean(present)) if present else 0.0

    def table(self) -> str:
        lines = [f"{'class':>20}  {'AP':>7}  {'truths':>6}  {'dets':>6}"]
        for name, c in zip(self.names, self.per_class):
            lines.append(f"{name:>20}  {c.ap * 100:6.2f}%  {c.n_truth:6d}  {c.n_detections:6d}")
        lines.append(f"mean average precision (mAP@{'.5'}) = {self.mean_ap:f}, or {self.mean_ap * 100:.2f} %")
        return "\n".join(lines)


@torch.no_grad()
def evaluate_map(net, images: list[str], names: list[str], thresh: float = 0.005, iou: float = 0.5,  # noqa: ANN001
                 nms: float = 0.45, relative_to: str | Path | None = None, progress: bool = True) -> MapResult:
    """Detect on every image (letterboxed, as Darknet's validate) and score against its labels."""
    classes = net.region.params.classes
    dets: list[list[tuple[int, float, np.ndarray]]] = [[] for _ in range(classes)]
    truths: list[dict[int, np.ndarray]] = [{} for _ in range(classes)]
    device = next(net.parameters()).device
    net.eval()
    for img_id, name in enumerate(tqdm(images, disable=not progress, unit="img", file=sys.stderr)):
        path = resolve_path(name, relative_to)
        image = load_image(path)
        labels = read_labels(resolve_path(label_path(str(path)), relative_to), "skip", classes).boxes
        h, w = image.shape[1:]
        for cls in range(classes):
            boxes = labels[labels[:, 0] == cls, 1:5]
            truths[cls][img_id] = xywh_to_xyxy(boxes) * [w, h, w, h]
        x = torch.from_numpy(network_input(image, net.net.width, net.net.height))[None].to(device)
        out = net(x)[0].float()
        for d in decode_detections(net, out, w, h, thresh, 0.5, nms):
            box = xywh_to_xyxy(np.array(d.bbox))[0] * [w, h, w, h]
            for cls, prob in zip(d.classes, d.probs):
                dets[cls].append((img_id, prob, box))
    per_class = [evaluate_class(dets[c], truths[c], iou) for c in range(classes)]
    return MapResult(per_class, names[:classes])


def map_from_data_file(net, data_file: str | Path, thresh: float = 0.005, iou: float = 0.5,  # noqa: ANN001
                       progress: bool = True) -> MapResult:
    options = read_data_file(data_file)
    if "valid" not in options:
        raise DarknetError("has no valid= list", data_file)
    valid = resolve_path(options["valid"], data_file)
    names = read_data_names(options, net.region.params.classes)
    return evaluate_map(net, read_list(valid), names, thresh, iou, relative_to=valid, progress=progress)
