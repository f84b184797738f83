"""Pass-through layers at inference: [dropout], [cost]; and [upsample] (a negative stride downsamples)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.registry import Built, Context, Shape, register

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


class DropoutLayer(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        # Darknet scales kept units by 1/(1-p) in training and passes through at inference.
        return F.dropout(x, self.p, self.training)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        emit_identity(gen, inp, out)


def emit_identity(gen: SourceWriter, inp: str, out: str) -> None:
    gen.body[-1] += " (identity at inference)"
    gen.emit(out, inp)


@register("dropout")
def build_dropout(sec: Section, ctx: Context) -> Built:
    alexeyab = ctx.dialect == "alexeyab"
    p = sec.get_float("probability", 0.2 if alexeyab else 0.5)
    if not 0 <= p < 1:
        raise sec.error(f"probability={p} must be in [0, 1)", "probability")
    if alexeyab and sec.get_int("dropblock", 0):
        raise sec.error("dropblock=1 is not supported by pydarknet", "dropblock")
    n = ctx.in_shape.size
    if alexeyab:
        summary = f"dropout    p = {float(np.float32(p)):.3f}        {n:4d}  ->   {n:4d}"
    else:
        summary = f"dropout       p = {p:.2f}               {n:4d}  ->  {n:4d}"
    return Built(DropoutLayer(p), ctx.in_shape, summary)


class CostLayer(nn.Module):
    """Darknet's network output skips [cost] layers; the training loss is the trainer's job."""

    def __init__(self, kind: str, scale: float) -> None:
        super().__init__()
        self.kind, self.scale = kind, scale

    def forward(self, x: Tensor) -> Tensor:
        return x

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        emit_identity(gen, inp, out)


@register("cost")
def build_cost(sec: Section, ctx: Context) -> Built:
    kind = sec.get_str("type", "sse")
    if kind not in COST_TYPES:
        raise sec.error(f"unknown cost type {kind!r}", "type")
    scale = sec.get_float("scale", 1.0)
    for key in ("ratio", "noobject_scale", "thresh"):
        sec.get_float(key, 0.0)
    summary = f"cost                                           {ctx.in_shape.size:4d}"
    return Built(CostLayer(kind, scale), ctx.in_shape, summary)


class UpsampleLayer(nn.Module):
    """Each value repeated stride x stride times, times `scale` (upsample_cpu, forward)."""

    def __init__(self, stride: int, scale: float) -> None:
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        if x.is_contiguous(memory_format=torch.channels_last):
            # One copy, and NHWC stays NHWC (the fast variant's layout; repeat_interleave's output is NCHW,
            # which the [route] after it and the conv after that would each transpose again).
            b, c, h, w = x.shape
            nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None].expand(b, h, s, w, s, c)
            y = nhwc.reshape(b, h * s, w * s, c).permute(0, 3, 1, 2)
        else:
            y = x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
        return y * self.scale if self.scale != 1 else y

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        s = self.stride
        scale = "" if self.scale == 1 else f" * {self.scale!r}"
        gen.emit(out, f"{inp}.repeat_interleave({s}, dim=2).repeat_interleave({s}, dim=3){scale}")


class DownsampleLayer(nn.Module):
    """A negative stride: upsample_cpu run backwards, each output the SUM of its stride x stride block times
    `scale` (not an average)."""

    def __init__(self, stride: int, scale: float) -> None:
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.stride
        y = (x * self.scale if self.scale != 1 else x).reshape(b, c, h // s, s, w // s, s)
        return y.sum(dim=(3, 5))

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        s = self.stride
        scaled = inp if self.scale == 1 else f"({inp} * {self.scale!r})"
        gen.line(f"b, c, h, w = {inp}.shape")
        gen.emit(out, f"{scaled}.reshape(b, c, h // {s}, {s}, w // {s}, {s}).sum(dim=(3, 5))")


@register("upsample")
def build_upsample(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    stride = sec.get_int("stride", 2)
    if stride == 0:
        raise sec.error("stride=0: the upsample factor must not be 0", "stride")
    scale = sec.get_float("scale", 1.0)
    if stride > 0:
        out, name, module = Shape(c, h * stride, w * stride), "upsample", UpsampleLayer(stride, scale)
    else:
        stride = -stride
        if h % stride or w % stride:
            # Darknet would read the input with the wrong row length
            raise sec.error(f"stride=-{stride}: the input {w}x{h} is not divisible by {stride}", "stride")
        out, name, module = Shape(c, h // stride, w // stride), "downsample", DownsampleLayer(stride, scale)
    if ctx.dialect == "alexeyab":
        summary = f"{name:<24}{stride:2d}x  {w:4d} x{h:4d} x{c:4d} -> {out.w:4d} x{out.h:4d} x{out.c:4d}"
    else:
        summary = f"{name:<19}{stride:2d}x  {w:4d} x{h:4d} x{c:4d}   ->  {out.w:4d} x{out.h:4d} x{out.c:4d}"
    return Built(module, out, summary)
