"""[route] (concatenate earlier outputs, or one group of their channels) and [shortcut] (add earlier
outputs; AlexeyAB's form takes several, optionally weighted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.activations import Activation, activation_option, compile_expression
from pydarknet.layers.registry import Built, Context, Shape, register

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


def resolve_index(sec: Section, ctx: Context, raw: int, key: str) -> int:
    """Negative = relative to this layer, else absolute; it must name an earlier layer."""
    index = ctx.index + raw if raw < 0 else raw
    if not 0 <= index < ctx.index:
        raise sec.error(f"{key}={raw} names layer {index}, but only layers 0..{ctx.index - 1} "
                        "come before this one", key)
    return index


class RouteLayer(nn.Module):
    """The sources' outputs concatenated along the channels; with `groups` (AlexeyAB), only channel group
    `group_id` of each source (Darknet copies that slice of every source's output)."""

    def __init__(self, sources: list[int], groups: int = 1, group_id: int = 0) -> None:
        super().__init__()
        self.sources, self.groups, self.group_id = sources, groups, group_id

    def forward(self, outputs: list[Tensor]) -> Tensor:
        picked = [outputs[i] for i in self.sources]
        if self.groups > 1:
            picked = [t.chunk(self.groups, dim=1)[self.group_id] for t in picked]
        return picked[0] if len(picked) == 1 else torch.cat(picked, dim=1)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        names = [f"x{s}" for s in self.sources]
        if self.groups > 1:
            names = [f"{n}.chunk({self.groups}, dim=1)[{self.group_id}]" for n in names]
        gen.emit(out, names[0] if len(names) == 1 else f"torch.cat([{', '.join(names)}], 1)")


def _route_summary(dialect: str, sources: list[int], groups: int, group_id: int, out: Shape) -> str:
    layers = "".join(f" {i}" for i in sources)
    if dialect != "alexeyab":
        return "route " + layers
    # parse_route's padding, tabs included.
    gap = " \t    " if len(sources) > 3 else " \t            " if len(sources) > 1 else " \t\t            "
    part = f"{group_id}/{groups}" if groups > 1 else "   "
    return f"route {layers}{gap}           {part} -> {out.w:4d} x{out.h:4d} x{out.c:4d} "


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
    groups, group_id = 1, 0
    if ctx.dialect == "alexeyab":
        groups = sec.positive_int("groups", 1)
        group_id = sec.get_int("group_id", 0)
        if not 0 <= group_id < groups:
            raise sec.error(f"group_id={group_id} must be in 0..{groups - 1} (groups={groups})", "group_id")
        for i in sources:
            if ctx.shapes[i].c % groups:
                raise sec.error(f"groups={groups} does not divide the {ctx.shapes[i].c} channels of layer {i}",
                                "groups")
        for key in ("stream", "wait_stream"):  # CUDA stream choice: no effect on the numbers
            sec.get_int(key, -1)
    out = Shape(sum(ctx.shapes[i].c for i in sources) // groups, first.h, first.w)
    summary = _route_summary(ctx.dialect, sources, groups, group_id, out)
    return Built(RouteLayer(sources, groups, group_id), out, summary, sources=sources)


class ShortcutLayer(nn.Module):
    """pjreddie's shortcut_cpu: out = alpha*x + beta*from, sampling/striding when sizes differ."""

    takes_input = True  # called as layer(x, outputs)

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

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        src = f"x{self.sources[0]}"
        alpha = "" if self.alpha == 1 else f" * {self.alpha!r}"
        beta = "" if self.beta == 1 else f"{self.beta!r} * "
        same_channels = gen.net.shapes[i].c == gen.net.shapes[self.sources[0]].c == self.minc
        if self.stride == self.sample == 1 and same_channels:
            gen.line(f"x = {inp}{alpha} + {beta}{src}")
        else:  # shortcut_cpu: stride through the bigger map, add into the common channels
            m, st, sa = self.minc, self.stride, self.sample
            every = {s: f", ::{s}, ::{s}" if s > 1 else "" for s in (st, sa)}
            fit = {d: f"(x.shape[{d}] + {sa - 1}) // {sa}" if sa > 1 else f"x.shape[{d}]" for d in (2, 3)}
            gen.line(f"add = {src}[:, :{m}{every[st]}]")
            gen.line(f"x = {inp}.clone()" if self.alpha == 1 else f"x = {inp} * {self.alpha!r}")
            gen.line(f"h, w = min(add.shape[2], {fit[2]}), min(add.shape[3], {fit[3]})")
            gen.line(f"x[:, :{m}{every[sa]}][:, :, :h, :w].add_({beta}add[:, :, :h, :w])")
        gen.activation(out, self.act.name)


WEIGHTS_TYPES = {"none": 0, "per_feature": 1, "per_layer": 1, "per_channel": 2}  # AlexeyAB's enum values
NORMALIZATIONS = {"none": 0, "relu": 1, "avg_relu": 1, "softmax": 2}
# The shortcut weights' normalization across the inputs (dim 0) as torch expressions of `{w}`, made into the
# runtime's code here and written out by codegen: the numerator per normalization and mode, then the division.
NORMALIZE_CODE = {
    (1, "train"): "torch.relu({w})",
    (1, "eval"): "torch.clamp({w}, min=0.001)",  # fuse_conv_batchnorm's lrelu
    (2, "train"): "torch.exp({w} - {w}.amax(0, keepdim=True))",
    (2, "eval"): "torch.exp({w} - {w}.amax(0, keepdim=True))",
}
DIVIDE_CODE = "{w} / ({w}.sum(0, keepdim=True) + 0.0001)"
_NORMALIZE = {key: compile_expression(code.format(w="w"), "w") for key, code in NORMALIZE_CODE.items()}
_DIVIDE = compile_expression(DIVIDE_CODE.format(w="w"), "w")


class MultiShortcutLayer(nn.Module):
    """AlexeyAB's shortcut (shortcut_multilayer_cpu): out = x*w0 + sum_i from_i*w_(i+1), each source added into
    the channels it has (sources have the input's height and width), then the activation.

    `weights` (weights_type=per_feature: one per input, per_channel: one per input and channel, as rows
    input, from_1, ...) are stored in the .weights file and normalized across the inputs per column when
    `weights_normalization` is relu or softmax. AlexeyAB's detector folds that normalization before
    inference (fuse_conv_batchnorm) with relu replaced by max(w, 0.001): eval mode computes that, training
    mode the forward's relu."""

    takes_input = True  # called as layer(x, outputs)

    def __init__(self, sources: list[int], source_channels: list[int], channels: int, weights_type: str,
                 normalization: str, activation: str) -> None:
        super().__init__()
        self.sources, self.channels = sources, channels
        self.add_channels = [min(c, channels) for c in source_channels]
        self.weights_type, self.normalization = weights_type, normalization
        self.weights = None
        if WEIGHTS_TYPES[weights_type]:
            step = channels if WEIGHTS_TYPES[weights_type] == 2 else 1
            self.weights = nn.Parameter(torch.ones(len(sources) + 1, step))  # Darknet's initial weights
        self.act = Activation(activation)

    def _normalization(self) -> tuple[int, str]:
        return NORMALIZATIONS[self.normalization], "train" if self.training else "eval"

    def normalized_weights(self) -> Tensor | None:
        """(inputs, 1 or channels) factors, normalized across the inputs as the current mode computes them."""
        w = self.weights
        if w is None or NORMALIZATIONS[self.normalization] == 0:
            return w
        return _DIVIDE(_NORMALIZE[self._normalization()](w))

    def forward(self, x: Tensor, outputs: list[Tensor]) -> Tensor:
        w = self.normalized_weights()
        out = x if w is None else x * w[0].view(1, -1, 1, 1)
        for i, (source, k) in enumerate(zip(self.sources, self.add_channels)):
            add = outputs[source][:, :k]
            if w is not None:
                add = add * w[i + 1, :k].view(1, -1, 1, 1)
            out = out + add if k == self.channels else torch.cat([out[:, :k] + add, out[:, k:]], 1)
        return self.act(out)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        """The eval-mode forward (the normalization AlexeyAB's detector folds)."""
        w = None
        if self.weights is not None:
            name = f"self.shortcut{i}_weights"
            gen.param(name[5:], f"layers.{i}.weights", f"torch.ones{tuple(self.weights.shape)}")
            w = name
            if NORMALIZATIONS[self.normalization]:
                gen.line(f"sw = {NORMALIZE_CODE[NORMALIZATIONS[self.normalization], 'eval'].format(w=name)}")
                gen.line(f"sw = {DIVIDE_CODE.format(w='sw')}")
                w = "sw"
        gen.line(f"x = {inp}" if w is None else f"x = {inp} * {w}[0].view(1, -1, 1, 1)")
        for j, (source, k) in enumerate(zip(self.sources, self.add_channels)):
            add = f"x{source}[:, :{k}]"
            if w is not None:
                add = f"{add} * {w}[{j + 1}, :{k}].view(1, -1, 1, 1)"
            gen.line(f"x = x + {add}" if k == self.channels else f"x = torch.cat([x[:, :{k}] + {add}, x[:, {k}:]], 1)")
        gen.activation(out, self.act.name)

    def darknet_params(self) -> list[Tensor]:
        return [] if self.weights is None else [self.weights]


def _shortcut_pjreddie(sec: Section, ctx: Context) -> Built:
    raw = sec.get_int("from", 0)
    source = resolve_index(sec, ctx, raw, "from")
    src, cur = ctx.shapes[source], ctx.in_shape
    stride = max(1, src.w // cur.w)
    sample = max(1, cur.w // src.w)
    if stride != max(1, src.h // cur.h) or sample != max(1, cur.h // src.h):
        raise sec.error(f"from={raw}: sizes {src.w}x{src.h} and {cur.w}x{cur.h} do not scale evenly", "from")
    activation = activation_option(sec, "linear", ctx.dialect)
    alpha = sec.get_float("alpha", 1.0)
    beta = sec.get_float("beta", 1.0)
    summary = (f"res  {source:3d}                {src.w:4d} x{src.h:4d} x{src.c:4d}   ->  "
               f"{cur.w:4d} x{cur.h:4d} x{cur.c:4d}")
    module = ShortcutLayer(source, stride, sample, min(src.c, cur.c), activation, alpha, beta)
    return Built(module, cur, summary, sources=[source])


def _choice(sec: Section, key: str, options: dict[str, int]) -> str:
    value = sec.get_str(key, "none")
    if value not in options:
        raise sec.error(f"unknown {key} {value!r} ({', '.join(options)})", key)
    return value


def _shortcut_alexeyab(sec: Section, ctx: Context) -> Built:
    raw = sec.get_list("from", int)
    if not raw:
        raise sec.error("shortcut needs from=", "from")
    sources = [resolve_index(sec, ctx, r, "from") for r in raw]
    cur = ctx.in_shape
    lines = []
    for i in sources:
        src = ctx.shapes[i]
        if (src.w, src.h) != (cur.w, cur.h):  # parse_shortcut asserts it
            raise sec.error(f"from: layer {i} is {src.w}x{src.h}, the input {cur.w}x{cur.h} (AlexeyAB's "
                            "shortcut needs equal width and height)", "from")
        if src.c != cur.c:
            lines.append(f" ({cur.w:4d} x{cur.h:4d} x{cur.c:4d}) + ({src.w:4d} x{src.h:4d} x{src.c:4d}) ")
    activation = activation_option(sec, "linear", ctx.dialect)
    weights_type = _choice(sec, "weights_type", WEIGHTS_TYPES)
    normalization = _choice(sec, "weights_normalization", NORMALIZATIONS)
    flops = cur.size * len(sources) * (2 if WEIGHTS_TYPES[weights_type] else 1)
    bflops = float(np.float32(flops / 1e9))
    summary = "\n".join([
        f"Shortcut Layer: {''.join(f'{i}, ' for i in sources)} wt = {WEIGHTS_TYPES[weights_type]}, "
        f"wn = {NORMALIZATIONS[normalization]}, outputs:{cur.w:4d} x{cur.h:4d} x{cur.c:4d} {bflops:5.3f} BF",
        *lines])
    module = MultiShortcutLayer(sources, [ctx.shapes[i].c for i in sources], cur.c, weights_type, normalization,
                                activation)
    return Built(module, cur, summary, flops, sources=sources)


@register("shortcut")
def build_shortcut(sec: Section, ctx: Context) -> Built:
    if not sec.has("from"):
        raise sec.error("shortcut needs from=")
    return _shortcut_alexeyab(sec, ctx) if ctx.dialect == "alexeyab" else _shortcut_pjreddie(sec, ctx)
