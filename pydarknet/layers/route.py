"""[route] (concatenate earlier outputs) and [shortcut] (add an earlier output)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.activations import Activation, activation_option
from pydarknet.layers.registry import Built, Context, Shape, register


def resolve_index(sec: Section, ctx: Context, raw: int, key: str) -> int:
    """Negative = relative to this layer, else absolute; it must name an earlier layer."""
    index = ctx.index + raw if raw < 0 else raw
    if not 0 <= index < ctx.index:
        raise sec.error(f"{key}={raw} names layer {index}, but only layers 0..{ctx.index - 1} "
                        "come before this one", key)
    return index


class RouteLayer(nn.Module):
    def __init__(self, sources: list[int]) -> None:
        super().__init__()
        self.sources = sources

    def forward(self, outputs: list[Tensor]) -> Tensor:
        picked = [outputs[i] for i in self.sources]
        return picked[0] if len(picked) == 1 else torch.cat(picked, dim=1)


@register("route")
def build_route(sec: Section, ctx: Context) -> Built:
    raw = sec.get_list("layers", int)
    if not raw:
        raise sec.error("route needs layers=")
    sources = [resolve_index(sec, ctx, r, "layers") for r in raw]
    first = ctx.shapes[sources[0]]
    for i in sources[1:]:
        s = ctx.shapes[i]
        if (s.h, s.w) != (first.h, first.w):
            raise sec.error(f"layers {sources[0]} ({first.w}x{first.h}) and {i} ({s.w}x{s.h}) have "
                            "different spatial sizes", "layers")
    out = Shape(sum(ctx.shapes[i].c for i in sources), first.h, first.w)
    summary = "route " + "".join(f" {i}" for i in sources)
    return Built(RouteLayer(sources), out, summary, sources=sources)


class ShortcutLayer(nn.Module):
    """Darknet's shortcut_cpu: out = alpha*x + beta*from, sampling/striding when sizes differ."""

    def __init__(self, source: int, stride: int, sample: int, minc: int, activation: str,
                 alpha: float, beta: float) -> None:
        super().__init__()
        self.sources = [source]
        self.stride, self.sample, self.minc = stride, sample, minc
        self.alpha, self.beta = alpha, beta
        self.act = Activation(activation)

    def forward(self, x: Tensor, outputs: list[Tensor]) -> Tensor:
        add = outputs[self.sources[0]]
        add = add[:, : self.minc, :: self.stride, :: self.stride]
        out = x * self.alpha  # a new tensor, so the in-place add below leaves x intact
        h = min(add.shape[2], (x.shape[2] + self.sample - 1) // self.sample)
        w = min(add.shape[3], (x.shape[3] + self.sample - 1) // self.sample)
        out[:, : self.minc, :: self.sample, :: self.sample][:, :, :h, :w].add_(self.beta * add[:, :, :h, :w])
        return self.act(out)


@register("shortcut")
def build_shortcut(sec: Section, ctx: Context) -> Built:
    raw = sec.get_int("from", 0)
    if not sec.has("from"):
        raise sec.error("shortcut needs from=")
    source = resolve_index(sec, ctx, raw, "from")
    src, cur = ctx.shapes[source], ctx.in_shape
    stride = max(1, src.w // cur.w)
    sample = max(1, cur.w // src.w)
    if stride != max(1, src.h // cur.h) or sample != max(1, cur.h // src.h):
        raise sec.error(f"from={raw}: sizes {src.w}x{src.h} and {cur.w}x{cur.h} do not scale evenly", "from")
    activation = activation_option(sec, "linear")
    alpha = sec.get_float("alpha", 1.0)
    beta = sec.get_float("beta", 1.0)
    summary = (f"res  {source:3d}                {src.w:4d} x{src.h:4d} x{src.c:4d}   ->  "
               f"{cur.w:4d} x{cur.h:4d} x{cur.c:4d}")
    module = ShortcutLayer(source, stride, sample, min(src.c, cur.c), activation, alpha, beta)
    return Built(module, cur, summary, sources=[source])
