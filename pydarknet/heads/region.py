"""[region]: YOLOv2's detection head as pjreddie's Darknet (final commit) runs it, GPU semantics.

The activation is `forward_region_layer`'s; the decode is `get_region_detections` + `correct_region_boxes`.
Float vs double follows the C code: the box w/h `exp()` and the letterbox correction of x/y run in double
and are rounded to float32 where C stores into a float. Probabilities are bit-identical; boxes are within 2
ulp, because Darknet's `-Ofast` build computes the letterbox ratios `(float)new_w/netw` with RCPPS plus one
Newton step (gcc's vectorized float division under -ffast-math: 32.f/32 gives 0.99999994); that depends on
the CPU's RCPPS table, so it is not emulated. The training delta is in `region_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from pydarknet.boxes import Nms, nms_obj, nms_sort
from pydarknet.cfg import Section
from pydarknet.detection import Candidates
from pydarknet.errors import DarknetError
from pydarknet.heads import Frame, Head, HeadDelta, validate_command
from pydarknet.image import letterbox_geometry
from pydarknet.layers.registry import Built, Context, register
from pydarknet.wordtree import Tree, hierarchy_predictions, read_map, read_tree, top_prediction_region, tree_softmax

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter

_F32 = np.float32


@dataclass
class RegionParams:
    """The [region] section's options, with Darknet's defaults (parse_region)."""

    n: int
    classes: int
    coords: int = 4
    anchors: list[float] | None = None  # in grid cells; None: 0.5 each
    softmax: bool = False
    background: bool = False
    tree_file: str | None = None
    map_file: str | None = None
    thresh: float = 0.5
    rescore: bool = False
    bias_match: bool = False
    coord_scale: float = 1.0
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    mask_scale: float = 1.0
    jitter: float = 0.2
    random: bool = False
    absolute: bool = False
    max_boxes: int = 30
    log: int = 0
    sqrt: bool = False
    classfix: int = 0

    def __post_init__(self) -> None:
        if self.anchors is None:
            self.anchors = [0.5] * (2 * self.n)

    @property
    def entries(self) -> int:
        """Values per anchor and cell: x, y, w, h, (masks), objectness, classes."""
        return self.coords + 1 + self.classes


def region_activate(x: Tensor, n: int, coords: int, classes: int, softmax: bool, tree: Tree | None,
                    background: bool = False) -> Tensor:
    """Activate a (N, n*(coords+1+classes), H, W) region input; per anchor the entries are
    `[x, y, w, h, (masks), obj, class0..]`, each an H*W plane.

    logistic on x, y (and masks) and on obj unless `background`; w, h raw. Classes: a per-group softmax
    for a tree (which wins over `softmax`), else a softmax over `classes` (over obj + classes with
    `background`), else logistic."""
    batch, channels, h, w = x.shape
    entries = coords + 1 + classes
    v = x.float().reshape(batch, n, entries, h * w)
    parts = [torch.sigmoid(v[:, :, :2]), v[:, :, 2:4]]
    if coords > 4:
        parts.append(torch.sigmoid(v[:, :, 4:coords]))
    obj, cls = v[:, :, coords : coords + 1], v[:, :, coords + 1 :]
    if tree is not None:
        parts += [obj if background else torch.sigmoid(obj), tree_softmax(cls, tree, dim=2)]
    elif softmax and background:
        parts.append(torch.softmax(v[:, :, coords:], dim=2))
    elif softmax:
        parts += [torch.sigmoid(obj), torch.softmax(cls, dim=2)]
    else:
        parts += [obj if background else torch.sigmoid(obj), torch.sigmoid(cls)]
    return torch.cat(parts, 2).reshape(batch, channels, h, w)


def gpu_backward_scale(output: Tensor, n: int, coords: int, classes: int, background: bool = False) -> Tensor:
    """The factor `backward_region_layer_gpu` multiplies the delta by: the logistic derivative (1-y)*y on
    x, y, mask entries and objectness (unless `background`), 1 on w, h and classes (their delta already is
    the gradient w.r.t. the logits)."""
    batch, _, h, w = output.shape
    y = output.detach().reshape(batch, n, coords + 1 + classes, h * w)
    logistic = [0, 1, *range(4, coords)] + ([] if background else [coords])
    scale = torch.ones_like(y)
    scale[:, :, logistic] = (1 - y[:, :, logistic]) * y[:, :, logistic]
    return scale.reshape(output.shape)


class _GpuRegionBackward(torch.autograd.Function):
    """Darknet GPU backward: the gradient given for the activated output is scaled by the logistic
    derivative on x, y and objectness; w, h and class entries pass through unchanged (the class
    delta is already the softmax cross-entropy gradient w.r.t. the logits)."""

    @staticmethod
    def forward(ctx, x, activated, scale):  # noqa: ANN001
        ctx.save_for_backward(scale)
        return activated.detach().clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        (scale,) = ctx.saved_tensors
        return grad * scale, None, None


def region_boxes(raw: Tensor | np.ndarray, col: Tensor | np.ndarray, row: Tensor | np.ndarray,
                 anchor_w: Tensor | np.ndarray, anchor_h: Tensor | np.ndarray, w: int, h: int) -> tuple:
    """Darknet's `get_region_box` on (..., 4) raw entries (x, y after the logistic, w, h raw) at grid cells
    (col, row) with anchors in grid cells, broadcasting: (x, y, w, h) relative to the network input. x, y
    in float32; w, h as `exp(t) * anchor / grid` in double, stored to float. Torch or numpy: same bits."""
    if isinstance(raw, np.ndarray):
        exp, wide, narrow = np.exp, (lambda a: np.asarray(a, np.float64)), (lambda a: a.astype(_F32))
    else:
        exp, wide, narrow = torch.exp, (lambda a: a.double()), (lambda a: a.float())
    bx = (col + raw[..., 0]) / w
    by = (row + raw[..., 1]) / h
    bw = narrow(exp(wide(raw[..., 2])) * wide(anchor_w) / w)
    bh = narrow(exp(wide(raw[..., 3])) * wide(anchor_h) / h)
    return bx, by, bw, bh


def correct_region_boxes(boxes: np.ndarray, frame: Frame) -> np.ndarray:
    """Darknet's correct_region_boxes: network-relative (M, 4) xywh -> relative to the image (or pixels).
    Without a letterbox the boxes already are image-relative: the ratios are 1 and the correction exact."""
    net_w, net_h = frame.net_w, frame.net_h
    new_w, new_h = (letterbox_geometry(frame.image_w, frame.image_h, net_w, net_h) if frame.letterbox
                    else (net_w, net_h))
    x, y, w, h = boxes.T
    # C: b.x = (b.x - (netw - new_w)/2./netw) / ((float)new_w/netw), in double, stored as float.
    x = ((x.astype(np.float64) - (net_w - new_w) / 2.0 / net_w) / float(_F32(new_w) / _F32(net_w))).astype(_F32)
    y = ((y.astype(np.float64) - (net_h - new_h) / 2.0 / net_h) / float(_F32(new_h) / _F32(net_h))).astype(_F32)
    w = w * (_F32(net_w) / _F32(new_w))
    h = h * (_F32(net_h) / _F32(new_h))
    if not frame.relative:
        img_w, img_h = _F32(frame.image_w), _F32(frame.image_h)
        x, w, y, h = x * img_w, w * img_w, y * img_h, h * img_h
    return np.stack([x, y, w, h], 1)


class RegionHead(Head):
    def __init__(self, params: RegionParams, tree: Tree | None = None, class_map: np.ndarray | None = None) -> None:
        super().__init__()
        self.params = params
        self.classes = params.classes
        self.tree = tree
        self.class_map = class_map
        self.register_buffer("biases", torch.tensor(params.anchors, dtype=torch.float32))

    def activate(self, x: Tensor) -> Tensor:
        p = self.params
        return region_activate(x, p.n, p.coords, p.classes, p.softmax, self.tree, p.background)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        """region_activate's ops written out."""
        p = self.params
        entries = p.coords + 1 + p.classes
        gen.line(f"b, _, h, w = {inp}.shape")
        gen.line(f"v = {inp}.reshape(b, {p.n}, {entries}, h * w)  # per anchor: x, y, w, h, objectness, "
                 f"{p.classes} classes")
        gen.line("xy = torch.sigmoid(v[:, :, :2])")
        if p.softmax and p.background and self.tree is None:  # one softmax over objectness and classes
            gen.line("obj_cls = torch.softmax(v[:, :, 4:], dim=2)")
            gen.emit(out, f"torch.cat([xy, v[:, :, 2:4], obj_cls], 2).reshape(b, {p.n * entries}, h, w)")
            return
        gen.line("obj = v[:, :, 4:5]" if p.background else "obj = torch.sigmoid(v[:, :, 4:5])")
        if self.tree is not None:
            gen.line(f"cls = self.tree_softmax(v[:, :, 5:], {gen.tree(i, self.tree)}, 2)")
        elif p.softmax:
            gen.line("cls = torch.softmax(v[:, :, 5:], dim=2)")
        else:
            gen.line("cls = torch.sigmoid(v[:, :, 5:])")
        gen.emit(out, f"torch.cat([xy, v[:, :, 2:4], obj, cls], 2).reshape(b, {p.n * entries}, h, w)")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.activate(x)
        p = self.params
        with torch.no_grad():
            activated = self.activate(x)
            scale = gpu_backward_scale(activated, p.n, p.coords, p.classes, p.background)
        return _GpuRegionBackward.apply(x, activated, scale)

    # pjreddie's commands: `detector test` and `valid` letterbox and run do_nms_sort; its demo letterboxes
    # and runs do_nms_obj; validate_detector_recall resizes and runs do_nms_obj.
    def letterbox(self, command: str) -> bool:
        return validate_command(command) != "recall"

    def nms(self, command: str) -> Nms:
        return nms_obj if validate_command(command) in ("recall", "demo") else nms_sort

    def _view(self, output: Tensor) -> np.ndarray:
        """One image's output as a (n, entries, H*W) float32 numpy array (no copy on the CPU)."""
        return output.detach().float().cpu().numpy().reshape(self.params.n, self.params.entries, -1)

    def tree_entries(self, output: Tensor, rows: np.ndarray) -> np.ndarray:
        """(len(rows), entries) values of boxes `rows` as `get_region_detections` leaves the output for a
        tree: `hierarchy_predictions` runs in place over the classes (from the objectness entry on with
        `background`), so they are absolute (path-multiplied) probabilities."""
        p = self.params
        v = self._view(output)
        anchor, cell = np.divmod(rows, v.shape[2])
        values = v[anchor, :, cell]
        first = p.coords + (not p.background)
        absolute = hierarchy_predictions(torch.from_numpy(values[:, first : first + p.classes]), self.tree)
        values[:, first : first + p.classes] = absolute.numpy()
        return values

    def candidates(self, output: Tensor, frame: Frame, thresh: float, hier_thresh: float = 0.5,
                   class_map: np.ndarray | None = None) -> Candidates:
        """`get_region_detections` reduced to its non-zero values: only boxes with objectness > thresh can
        have a prob, so only they are read, walked down the tree and decoded. In numpy, on the output's CPU
        copy (Darknet also pulls the region output to the host to decode it): a few hundred small arrays,
        where torch's per-call cost would dominate. As in C, `class_map` is only used with a tree."""
        p = self.params
        v = self._view(output)
        _, h, w = output.shape
        f_thresh = _F32(thresh)  # C compares with a float thresh
        scale = np.ones(v.shape[0] * v.shape[2], dtype=_F32) if p.background else v[:, p.coords].reshape(-1)
        rows = np.flatnonzero(scale > f_thresh)  # objectness = scale > thresh ? scale : 0
        anchor, cell = np.divmod(rows, h * w)
        if self.tree is None:
            probs = scale[rows, None] * v[anchor[:, None], p.coords + 1 + np.arange(p.classes), cell[:, None]]
            box, cls = np.nonzero((probs > f_thresh) & (probs != 0))
            prob = probs[box, cls]
        elif class_map is None:
            first = p.coords + (not p.background)
            cls = top_prediction_region(v[:, first : first + p.classes], anchor, cell, self.tree, hier_thresh)
            box, prob = np.arange(rows.size), scale[rows]  # prob > thresh, so != 0
        else:
            # C reads `coords + 1 + map[j]` even with `background`, where the tree starts one entry earlier.
            probs = scale[rows, None] * self.tree_entries(output, rows)[:, p.coords + 1 + np.asarray(class_map)]
            box, cls = np.nonzero(probs > f_thresh)
            prob = probs[box, cls]
        anchors = self.biases.detach().cpu().numpy().reshape(-1, 2)
        raw = v[anchor[:, None], np.arange(4), cell[:, None]]
        xywh = np.stack(region_boxes(raw, (cell % w).astype(_F32), (cell // w).astype(_F32), anchors[anchor, 0],
                                     anchors[anchor, 1], w, h), 1)
        return Candidates(v.shape[0] * h * w, rows, correct_region_boxes(xywh, frame), scale[rows],
                          box.astype(np.int64), cls.astype(np.int64), prob.astype(_F32))

    def delta(self, output: Tensor, truth: Tensor, seen: int) -> HeadDelta:
        from pydarknet.heads.region_loss import region_delta

        p = self.params
        return HeadDelta(*region_delta(
            output.detach(), truth.to(output.device), self.biases, p.n, p.classes, p.coords, seen,
            thresh=p.thresh, rescore=p.rescore, bias_match=p.bias_match, softmax=p.softmax, tree=self.tree,
            map=self.class_map, coord_scale=p.coord_scale, object_scale=p.object_scale,
            noobject_scale=p.noobject_scale, class_scale=p.class_scale, background=p.background))

    def decode_dense(self, output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every box in detection order (`anchor*H*W + row*W + col`): network-relative xywh, objectness (1
        with `background`), and objectness * class prob (for a tree: its absolute, path-multiplied prob)."""
        p = self.params
        if self.tree is not None and p.background:
            raise DarknetError("decoding a WordTree region with background=1 is not supported")
        batch, _, h, w = output.shape
        v = output.reshape(batch, p.n, p.entries, h * w)
        cell = torch.arange(h * w, device=output.device)
        anchors = self.biases.reshape(p.n, 2, 1)
        raw = v[:, :, :4].transpose(2, 3)
        boxes = torch.stack(region_boxes(raw, (cell % w).float(), torch.div(cell, w, rounding_mode="floor").float(),
                                         anchors[:, 0], anchors[:, 1], w, h), 3).reshape(batch, -1, 4)
        cls = v[:, :, p.coords + 1 :]
        if self.tree is not None:
            cls = hierarchy_predictions(cls, self.tree, dim=2)
        cls = cls.transpose(2, 3).reshape(batch, -1, p.classes)
        if p.background:
            return boxes, torch.ones_like(cls[..., 0]), cls
        objectness = v[:, :, p.coords].reshape(batch, -1)
        return boxes, objectness, objectness[..., None] * cls


@register("region")
def build_region(sec: Section, ctx: Context) -> Built:
    c = ctx.in_shape.c
    coords = sec.positive_int("coords", 4)
    classes = sec.positive_int("classes", 20)
    n = sec.positive_int("num", 1)
    anchors = sec.get_list("anchors", float) or None  # `anchors=` without numbers: the default
    if anchors is not None and len(anchors) != 2 * n:
        raise sec.error(f"anchors= has {len(anchors)} numbers, num={n} needs {2 * n}", "anchors")
    if coords != 4:
        raise sec.error(f"coords={coords}: only 4 (no masks) is supported by pydarknet", "coords")
    tree, tree_file = sec.read_file("tree", read_tree)
    class_map, map_file = sec.read_file("map", read_map)
    if tree is not None and tree.n != classes:
        raise sec.error(f"tree={tree_file} has {tree.n} classes, classes={classes}", "tree")
    expected = n * (coords + 1 + classes)
    if c != expected:
        raise sec.error(f"input has {c} channels but num*(coords+1+classes) = {n}*({coords}+1+{classes}) "
                        f"= {expected}: the previous conv's filters do not match classes/num")
    params = RegionParams(
        n=n, classes=classes, coords=coords, anchors=anchors,
        softmax=bool(sec.get_int("softmax", 0)), background=bool(sec.get_int("background", 0)),
        tree_file=tree_file, map_file=map_file, thresh=sec.get_float("thresh", 0.5),
        rescore=bool(sec.get_int("rescore", 0)), bias_match=bool(sec.get_int("bias_match", 0)),
        coord_scale=sec.get_float("coord_scale", 1.0), object_scale=sec.get_float("object_scale", 1.0),
        noobject_scale=sec.get_float("noobject_scale", 1.0), class_scale=sec.get_float("class_scale", 1.0),
        mask_scale=sec.get_float("mask_scale", 1.0), jitter=sec.get_float("jitter", 0.2),
        random=bool(sec.get_int("random", 0)), absolute=bool(sec.get_int("absolute", 0)),
        max_boxes=sec.get_int("max", 30), log=sec.get_int("log", 0), sqrt=bool(sec.get_int("sqrt", 0)),
        classfix=sec.get_int("classfix", 0),
    )
    return Built(RegionHead(params, tree, class_map), ctx.in_shape, "detection")
