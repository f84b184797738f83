"""[yolo]: the detection head of YOLOv3/v4/v7, as AlexeyAB's Darknet runs it.

Its forward is forward_yolo_layer's activation; its options are parse_yolo's with AlexeyAB's defaults; the
decode is get_yolo_detections (boxes with objectness > thresh, in cell-major order, each with every class
whose objectness * prob > thresh: multi-label) + correct_yolo_boxes; the NMS is the cfg's nms_kind
(diounms_sort) or do_nms_sort. The geometry (yolo_boxes.py) follows the C code's float/double use. The
training delta is forward_yolo_layer's (yolo_loss.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from pydarknet.boxes import NMS_KINDS as NMS_FUNCTIONS
from pydarknet.boxes import Nms, nms_obj, nms_sort
from pydarknet.cfg import Section
from pydarknet.detection import Candidates
from pydarknet.heads import Frame, Head, HeadDelta, validate_command
from pydarknet.heads.yolo_boxes import correct_yolo_boxes, yolo_boxes
from pydarknet.layers.registry import Built, Context, register
from pydarknet.wordtree import read_map

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter

_F32 = np.float32
FLT_MAX = float(np.finfo(np.float32).max)
# AlexeyAB's enums, in their order (the numbers are what Darknet prints).
IOU_LOSSES = ("iou", "giou", "mse", "diou", "ciou")
NMS_KINDS = ("default", "greedynms", "diounms", "cornersnms")


@dataclass
class YoloParams:
    classes: int = 20
    total: int = 1  # `num`: anchors in the cfg; this layer predicts len(mask) of them
    mask: tuple[int, ...] = (0,)
    anchors: tuple[float, ...] = (0.5, 0.5)  # w, h pairs in pixels of the network input, `total` of them
    max_boxes: int = 200  # `max`: truth boxes per image
    scale_x_y: float = 1.0
    new_coords: bool = False  # the conv already applied the logistic; w, h decode as (2*v)^2 * anchor
    # Detection (read by the head)
    nms_kind: str = "default"  # one of NMS_KINDS, as parse_yolo maps the cfg's name (see _nms_kind)
    beta_nms: float = 0.6
    map_file: str | None = None
    # Training
    jitter: float = 0.2
    resize: float = 1.0
    random: float = 0.0
    focal_loss: bool = False
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    iou_thresh: float = 1.0
    iou_thresh_kind: str = "iou"
    iou_loss: str = "mse"
    iou_normalizer: float = 0.75
    obj_normalizer: float = 1.0
    cls_normalizer: float = 1.0
    delta_normalizer: float = 1.0
    max_delta: float = FLT_MAX
    objectness_smooth: bool = False
    label_smooth_eps: float = 0.0
    counters_per_class: tuple[int, ...] | None = None
    show_details: bool = True
    # Tracking (AlexeyAB's contrastive-embedding tracker)
    track_history_size: int = 5
    sim_thresh: float = 0.8
    dets_for_track: int = 1
    dets_for_show: int = 1
    track_ciou_norm: float = 0.01
    embedding_layer: int | None = None

    @property
    def n(self) -> int:
        """Anchors (boxes) this layer predicts per cell."""
        return len(self.mask)


class YoloHead(Head):
    """A [yolo] layer. Its forward activates a (N, n*(4+1+classes), H, W) input, per anchor the planes
    x, y, w, h, objectness, classes: logistic on x, y, objectness and classes, w and h raw, then x, y scaled
    by scale_x_y about the cell centre (x*s - (s-1)/2). With new_coords=1 nothing is activated (the conv's
    logistic did it), only that scaling. `net_size` (width, height) and `net_letter_box` are the [net]'s."""

    def __init__(self, params: YoloParams, class_map: np.ndarray | None = None, net_size: tuple[int, int] = (416, 416),
                 net_letter_box: bool = False) -> None:
        super().__init__()
        self.params = params
        self.classes = params.classes
        self.class_map = class_map  # read by AlexeyAB's training only (detection ignores map=)
        self.net_size = net_size
        self.net_letter_box = net_letter_box
        self.register_buffer("biases", torch.tensor(params.anchors, dtype=torch.float32))
        self.register_buffer("mask", torch.tensor(params.mask, dtype=torch.int64))
        s = np.float32(params.scale_x_y)
        # scal_add_cpu(.., scale_x_y, -0.5*(scale_x_y - 1), ..): the offset is a double rounded to float
        self.xy_scale, self.xy_offset = float(s), float(np.float32(-0.5 * float(s - np.float32(1))))

    def forward(self, x: Tensor) -> Tensor:
        p = self.params
        b, c, h, w = x.shape
        v = x.reshape(b, p.n, 5 + p.classes, h, w)
        xy, wh, rest = v[:, :, :2], v[:, :, 2:4], v[:, :, 4:]
        if not p.new_coords:
            xy, rest = torch.sigmoid(xy), torch.sigmoid(rest)
        if self.xy_scale != 1:
            xy = xy * self.xy_scale + self.xy_offset
        return torch.cat([xy, wh, rest], 2).reshape(b, c, h, w)

    # backward_yolo_layer adds the delta to the input's delta as it is: no derivative of the logistic or of
    # scale_x_y (the trainer backpropagates it from the layer's input).
    delta_to_input = True

    def delta(self, output: Tensor, truth: Tensor, seen: int, net_size: tuple[int, int] | None = None) -> HeadDelta:
        """AlexeyAB's training delta (times delta_normalizer, as backward_yolo_layer_gpu scales it), cost and
        printed values for the (N, C, H, W) output and `truth` (N, B, 5) rows x, y, w, h, class relative to
        the network input of size `net_size` (w, h)."""
        from pydarknet.heads.yolo_loss import yolo_delta  # here: yolo_loss imports this module's YoloParams

        if net_size is None:
            raise ValueError("the [yolo] delta needs the network input size (net_size)")
        found = yolo_delta(self.params, self.biases, output, truth.to(output.device), net_size, self.class_map)
        scale = float(np.float32(self.params.delta_normalizer))
        return found._replace(delta=found.delta * scale) if scale != 1 else found

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        p = self.params
        gen.line(f"b, c, h, w = {inp}.shape")
        gen.line(f"v = {inp}.reshape(b, {p.n}, {5 + p.classes}, h, w)  # per anchor: x, y, w, h, objectness, "
                 f"{p.classes} classes")
        gen.line("xy, wh, rest = v[:, :, :2], v[:, :, 2:4], v[:, :, 4:]")
        if not p.new_coords:
            gen.line("xy, rest = torch.sigmoid(xy), torch.sigmoid(rest)")
        if self.xy_scale != 1:
            gen.line(f"xy = xy * {self.xy_scale!r} + {self.xy_offset!r}  # scale_x_y={p.scale_x_y!r}")
        gen.emit(out, "torch.cat([xy, wh, rest], 2).reshape(b, c, h, w)")

    # AlexeyAB's commands: test (and detect), valid, map and demo letterbox when the [net] says letter_box=1
    # (test and demo also with -letter_box) and run the last [yolo]'s nms_kind (do_nms_sort by default);
    # recall resizes and runs do_nms_obj.
    def letterbox(self, command: str) -> bool:
        return validate_command(command) != "recall" and self.net_letter_box

    def nms(self, command: str) -> Nms:
        if validate_command(command) == "recall":
            return nms_obj
        kind = self.params.nms_kind
        if kind == "default":
            return nms_sort
        if kind == "diounms":  # box_diounms with the layer's float beta_nms
            return functools.partial(NMS_FUNCTIONS[kind], beta=float(_F32(self.params.beta_nms)))
        return NMS_FUNCTIONS[kind]  # greedynms: box_diou

    def demo_frames(self, frames: int) -> int:
        """AlexeyAB's demo decodes each frame's own output: it averages no [yolo] outputs."""
        return 1

    def _anchors(self) -> np.ndarray:
        """(n, 2) anchors of the masked boxes, in pixels of the network input."""
        return self.biases.detach().cpu().numpy().reshape(-1, 2)[list(self.params.mask)]

    def candidates(self, output: Tensor, frame: Frame, thresh: float, hier_thresh: float = 0.5,
                   class_map: np.ndarray | None = None) -> Candidates:
        """`get_yolo_detections`: the boxes with objectness > thresh, in Darknet's array order (cells in
        order, the anchors of each cell in mask order), each with every class prob = objectness * class >
        thresh. Darknet's array holds only these boxes (`count` = their number). `hier_thresh` and
        `class_map` are ignored, as there. In numpy on the output's CPU copy (see RegionHead.candidates)."""
        p = self.params
        _, h, w = output.shape
        v = output.detach().float().cpu().numpy().reshape(p.n, 5 + p.classes, h * w)
        f_thresh = _F32(thresh)  # C compares with a float thresh
        cell, anchor = np.nonzero(v[:, 4].T > f_thresh)  # cell-major: C's loop over cells, then anchors
        objectness = v[anchor, 4, cell]
        probs = objectness[:, None] * v[anchor[:, None], 5 + np.arange(p.classes), cell[:, None]]
        box, cls = np.nonzero(probs > f_thresh)
        anchors = self._anchors()
        raw = v[anchor[:, None], np.arange(4), cell[:, None]]
        xywh = np.stack(yolo_boxes(raw, (cell % w).astype(_F32), (cell // w).astype(_F32), anchors[anchor, 0],
                                   anchors[anchor, 1], (w, h), (frame.net_w, frame.net_h), p.new_coords), 1)
        return Candidates(cell.size, np.arange(cell.size), correct_yolo_boxes(xywh.reshape(-1, 4), frame),
                          objectness, box.astype(np.int64), cls.astype(np.int64), probs[box, cls])

    def decode_dense(self, output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every box in AlexeyAB's array order before its objectness filter (`(row*W + col)*n + anchor`:
        keeping the boxes with objectness > thresh gives get_yolo_detections' array): network-relative
        xywh, objectness, and objectness * class prob."""
        p = self.params
        batch, _, h, w = output.shape
        v = output.reshape(batch, p.n, 5 + p.classes, h * w).permute(0, 3, 1, 2)  # (N, cells, n, entries)
        cell = torch.arange(h * w, device=output.device)[:, None]
        anchors = self.biases.reshape(-1, 2)[self.mask]
        boxes = torch.stack(yolo_boxes(v[..., :4], (cell % w).float(),
                                       torch.div(cell, w, rounding_mode="floor").float(), anchors[:, 0],
                                       anchors[:, 1], (w, h), self.net_size, p.new_coords), 3)
        objectness = v[..., 4]
        probs = objectness[..., None] * v[..., 5:]
        return boxes.reshape(batch, -1, 4), objectness.reshape(batch, -1), probs.reshape(batch, -1, p.classes)


def _choice(sec: Section, key: str, default: str, options: tuple[str, ...]) -> str:
    value = sec.get_str(key, default)
    if value not in options:  # Darknet silently falls back to a default
        raise sec.error(f"unknown {key} {value!r} ({', '.join(options)})", key)
    return value


def _nms_kind(sec: Section) -> str:
    """parse_yolo knows default, greedynms and diounms; cornersnms (only [Gaussian_yolo] implements it) is
    accepted and runs as the default NMS, as in AlexeyAB's Darknet."""
    kind = _choice(sec, "nms_kind", "default", NMS_KINDS)
    return "default" if kind == "cornersnms" else kind


def _mask(sec: Section, total: int) -> tuple[int, ...]:
    mask = sec.get_list("mask", int)
    if mask is None:
        return tuple(range(total))
    if not mask:
        raise sec.error("mask= is empty", "mask")
    for m in mask:
        if not 0 <= m < total:
            raise sec.error(f"mask index {m} is not one of the num={total} anchors (0..{total - 1})", "mask")
    return tuple(mask)


def _anchors(sec: Section, total: int) -> tuple[float, ...]:
    anchors = sec.get_list("anchors", float)
    if anchors is None:
        return (0.5,) * (2 * total)  # make_yolo_layer's biases
    if len(anchors) != 2 * total:
        raise sec.error(f"anchors= has {len(anchors)} numbers, num={total} needs {2 * total} (w,h pairs)",
                        "anchors")
    return tuple(anchors)


def _counters(sec: Section, classes: int) -> tuple[int, ...] | None:
    counters = sec.get_list("counters_per_class", int)
    if counters is not None and len(counters) != classes:
        raise sec.error(f"counters_per_class= has {len(counters)} values, classes={classes}", "counters_per_class")
    return None if counters is None else tuple(counters)


def parse_yolo(sec: Section, ctx: Context) -> tuple[YoloParams, np.ndarray | None]:
    classes = sec.positive_int("classes", 20)
    total = sec.positive_int("num", 1)
    mask = _mask(sec, total)
    embedding = sec.get_int("embedding_layer", 999999)
    class_map, map_file = sec.read_file("map", read_map)
    params = YoloParams(
        classes=classes, total=total, mask=mask, anchors=_anchors(sec, total),
        max_boxes=sec.positive_int("max", 200), scale_x_y=sec.get_float("scale_x_y", 1.0),
        new_coords=bool(sec.get_int("new_coords", 0)),
        nms_kind=_nms_kind(sec), beta_nms=sec.get_float("beta_nms", 0.6), map_file=map_file,
        jitter=sec.get_float("jitter", 0.2), resize=sec.get_float("resize", 1.0), random=sec.get_float("random", 0),
        focal_loss=bool(sec.get_int("focal_loss", 0)), ignore_thresh=sec.get_float("ignore_thresh", 0.5),
        truth_thresh=sec.get_float("truth_thresh", 1.0), iou_thresh=sec.get_float("iou_thresh", 1.0),
        iou_thresh_kind=_choice(sec, "iou_thresh_kind", "iou", ("iou", "giou", "diou", "ciou")),
        iou_loss=_choice(sec, "iou_loss", "mse", IOU_LOSSES),
        iou_normalizer=sec.get_float("iou_normalizer", 0.75), obj_normalizer=sec.get_float("obj_normalizer", 1.0),
        cls_normalizer=sec.get_float("cls_normalizer", 1.0),
        delta_normalizer=sec.get_float("delta_normalizer", 1.0), max_delta=sec.get_float("max_delta", FLT_MAX),
        objectness_smooth=bool(sec.get_int("objectness_smooth", 0)),
        label_smooth_eps=sec.get_float("label_smooth_eps", 0.0), counters_per_class=_counters(sec, classes),
        show_details=bool(sec.get_int("show_details", 1)),
        track_history_size=sec.get_int("track_history_size", 5), sim_thresh=sec.get_float("sim_thresh", 0.8),
        dets_for_track=sec.get_int("dets_for_track", 1), dets_for_show=sec.get_int("dets_for_show", 1),
        track_ciou_norm=sec.get_float("track_ciou_norm", 0.01),
        embedding_layer=None if embedding == 999999 else ctx.index + embedding if embedding < 0 else embedding,
    )
    return params, class_map


def _f32(value: float) -> float:
    """A C float as printf shows it."""
    return float(np.float32(value))


@register("yolo")
def build_yolo(sec: Section, ctx: Context) -> Built:
    params, class_map = parse_yolo(sec, ctx)
    expected = params.n * (4 + 1 + params.classes)
    if ctx.in_shape.c != expected:  # parse_yolo: l.outputs == params.inputs (new_coords changes nothing)
        raise sec.error(f"input has {ctx.in_shape.c} channels but len(mask)*(classes+5) = {params.n}*"
                        f"({params.classes}+5) = {expected}: the previous conv's filters do not match "
                        "classes/mask")
    p = params
    summary = (f"yolo\n[yolo] params: iou loss: {p.iou_loss} ({IOU_LOSSES.index(p.iou_loss)}), "
               f"iou_norm: {_f32(p.iou_normalizer):2.2f}, obj_norm: {_f32(p.obj_normalizer):2.2f}, "
               f"cls_norm: {_f32(p.cls_normalizer):2.2f}, delta_norm: {_f32(p.delta_normalizer):2.2f}, "
               f"scale_x_y: {_f32(p.scale_x_y):2.2f}")
    net_size = (ctx.net.width, ctx.net.height) if ctx.net is not None else (0, 0)
    net_letter_box = ctx.net is not None and ctx.net.letter_box
    return Built(YoloHead(params, class_map, net_size, net_letter_box), ctx.in_shape, summary)
