"""Detection as Darknet's `detector test`: letterbox, forward, get_region_detections, do_nms_sort."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pydarknet.boxes import do_nms_sort_pairs
from pydarknet.detection import Detection
from pydarknet.errors import DarknetError
from pydarknet.image import image_from_array, letterbox_image, load_image, resize_plain
from pydarknet.region.decode import region_candidates

ImageLike = str | Path | np.ndarray


def as_image(image: ImageLike) -> np.ndarray:
    """A path (decoded like Darknet) or an array (HWC uint8 RGB or CHW float) -> CHW float32."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    return image_from_array(np.asarray(image))


def network_input(image: np.ndarray, net_w: int, net_h: int, letterbox: bool = True) -> np.ndarray:
    return letterbox_image(image, net_w, net_h) if letterbox else resize_plain(image, net_w, net_h)


@torch.no_grad()
def detect(net: torch.nn.Module, images: ImageLike | Sequence[ImageLike], thresh: float = 0.5,
           hier_thresh: float = 0.5, nms: float = 0.45, letterbox: bool = True,
           batch_size: int = 8) -> list[list[Detection]]:
    """Detections per image, in the order `darknet detector test` prints them."""
    region = net.region
    if region is None:
        raise DarknetError("the network has no [region] layer to detect with", net.cfg_path)
    single = isinstance(images, (str, Path, np.ndarray))
    items = [images] if single else list(images)
    device = next(net.parameters()).device
    net_w, net_h = net.config.width, net.config.height
    results: list[list[Detection]] = []
    for start in range(0, len(items), batch_size):
        chunk = [as_image(im) for im in items[start:start + batch_size]]
        x = torch.from_numpy(np.stack([network_input(im, net_w, net_h, letterbox) for im in chunk]))
        out = net(x.to(device)).float()
        for im, o in zip(chunk, out):
            results.append(decode_detections(net, o, im.shape[2], im.shape[1], thresh, hier_thresh, nms,
                                             letterbox))
    return results


def decode_detections(net: torch.nn.Module, out: torch.Tensor, img_w: int, img_h: int, thresh: float,
                      hier_thresh: float, nms: float, letterbox: bool = True) -> list[Detection]:
    """One image's region output -> Darknet's detections after NMS (prob > thresh), in its printed order.

    What `get_region_boxes`, `do_nms_sort` and `detections` give, computed from the non-zero probs only
    (`region_candidates`, `do_nms_sort_pairs`): the dense (boxes x classes) matrix is never formed."""
    region = net.region
    p = region.params
    # With a plain resize the boxes need no letterbox correction: pretend the image had the net's shape.
    w, h = (img_w, img_h) if letterbox else (net.config.width, net.config.height)
    c = region_candidates(out, region.biases, p.n, p.classes, p.coords, w, h, net.config.width, net.config.height,
                          thresh, hier_thresh, tree=region.tree, background=p.background)
    index, box, cls, prob = c.index, c.box, c.cls, c.prob
    if nms > 0:
        order, dropped = do_nms_sort_pairs(c.objectness, index, c.boxes, box, cls, prob, nms)
    else:
        order, dropped = np.arange(index.size), np.zeros(box.size, dtype=bool)
    # Every prob here is > thresh; a box is printed with the ones NMS left, classes ascending.
    starts = np.searchsorted(box, np.arange(index.size + 1))
    keep = ~dropped
    boxes, objectness = c.boxes.tolist(), c.objectness[index].tolist()
    dets = []
    for b in order.tolist():
        lo, hi = starts[b], starts[b + 1]
        kept = keep[lo:hi]
        if kept.any():
            dets.append(Detection(tuple(boxes[b]), objectness[b], cls[lo:hi][kept].tolist(),
                                  prob[lo:hi][kept].tolist(), int(index[b])))
    return dets


def pixel_box(det: Detection, img_w: int, img_h: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) as draw_detections computes them: truncated to int, then clipped."""
    x, y, w, h = det.bbox
    left, right = int((x - w / 2.0) * img_w), int((x + w / 2.0) * img_w)
    top, bottom = int((y - h / 2.0) * img_h), int((y + h / 2.0) * img_h)
    return max(left, 0), max(top, 0), min(right, img_w - 1), min(bottom, img_h - 1)


def draw(image: np.ndarray, dets: list[Detection], names: Sequence[str], num_classes: int) -> np.ndarray:
    """The image (CHW float) with Darknet-style boxes, as 8-bit BGR."""
    from pydarknet.image import draw_detections

    bgr = np.ascontiguousarray((np.clip(image, 0, 1) * np.float32(255)).astype(np.uint8)[::-1].transpose(1, 2, 0))
    h, w = bgr.shape[:2]
    return draw_detections(bgr, [pixel_box(d, w, h) for d in dets], [d.label(names) for d in dets],
                           [d.classes[0] for d in dets], num_classes)


def detection_records(dets: list[Detection], names: Sequence[str], img_w: int, img_h: int,
                      tree=None) -> list[dict]:  # noqa: ANN001
    """JSON-ready records: one per (detection, class above thresh)."""
    from pydarknet.region.wordtree import path_to_root

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
