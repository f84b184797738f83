"""[region]: YOLOv2's detection head (activations here; decoding and loss in pydarknet.region)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.errors import DarknetError
from pydarknet.layers.registry import Built, Context, register
from pydarknet.paths import resolve_path

if TYPE_CHECKING:
    from pydarknet.export.codegen import SourceWriter

T = TypeVar("T")


@dataclass
class RegionParams:
    n: int
    classes: int
    coords: int
    anchors: list[float]
    softmax: bool
    background: bool
    tree_file: str | None
    map_file: str | None
    thresh: float
    rescore: bool
    bias_match: bool
    coord_scale: float
    object_scale: float
    noobject_scale: float
    class_scale: float
    mask_scale: float
    jitter: float
    random: bool
    absolute: bool
    max_boxes: int
    log: int
    sqrt: bool
    classfix: int


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


class RegionLayer(nn.Module):
    def __init__(self, params: RegionParams, tree, class_map: np.ndarray | None) -> None:  # noqa: ANN001
        super().__init__()
        self.params = params
        self.tree = tree
        self.class_map = class_map
        self.register_buffer("biases", torch.tensor(params.anchors, dtype=torch.float32))

    def activate(self, x: Tensor) -> Tensor:
        from pydarknet.region.activation import region_activate

        p = self.params
        return region_activate(x, p.n, p.coords, p.classes, p.softmax, self.tree, p.background)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        """region_activate's ops written out (see pydarknet.region.activation)."""
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
        from pydarknet.region.loss import gpu_backward_scale

        p = self.params
        with torch.no_grad():
            activated = self.activate(x)
            scale = gpu_backward_scale(activated, p.n, p.coords, p.classes, p.background)
        return _GpuRegionBackward.apply(x, activated, scale)


def _read_option_file(sec: Section, key: str, reader: Callable[[Path], T]) -> tuple[T | None, str | None]:
    """(reader(file), name) for the file the option names, or (None, None) without the option; a file
    that cannot be read or parsed is reported at the cfg line naming it."""
    name = sec.get_str(key)
    if name is None:
        return None, None
    try:
        return reader(resolve_path(name, sec.file)), name
    except DarknetError as err:
        raise DarknetError(f"{key}={name}: {err}", sec.file, sec.options[key].line) from None


@register("region")
def build_region(sec: Section, ctx: Context) -> Built:
    c = ctx.in_shape.c
    coords = sec.positive_int("coords", 4)
    classes = sec.positive_int("classes", 20)
    n = sec.positive_int("num", 1)
    anchors = sec.get_list("anchors", float) or [0.5] * (2 * n)
    if len(anchors) != 2 * n:
        raise sec.error(f"anchors= has {len(anchors)} numbers, num={n} needs {2 * n}", "anchors")
    if coords != 4:
        raise sec.error(f"coords={coords}: only 4 (no masks) is supported by pydarknet", "coords")
    from pydarknet.region.wordtree import read_map, read_tree

    tree, tree_file = _read_option_file(sec, "tree", read_tree)
    class_map, map_file = _read_option_file(sec, "map", read_map)
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
    return Built(RegionLayer(params, tree, class_map), ctx.in_shape, "detection")
