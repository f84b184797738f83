"""Darknet(nn.Module): the layer graph built from cfg sections, with route/shortcut wiring."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from pydarknet import layers as _layers  # noqa: F401  (fills the registry)
from pydarknet.cfg import Section, parse_cfg
from pydarknet.errors import DarknetError
from pydarknet.layers.registry import VARIANTS, Built, Context, Shape, build_layer
from pydarknet.netconfig import NetConfig, parse_net

# Layers that take Darknet's flat vectors as they are. A [softmax] output has no spatial layout (Darknet
# leaves its out_w/out_h/out_c at 0), so convolutions, pools, routes with others etc. cannot follow it.
FLAT_INPUT = {"connected", "softmax", "dropout", "cost"}


# Sections only AlexeyAB's Darknet has: a cfg with one of them follows its semantics (BatchNorm epsilon,
# detection with plain resize and fused BatchNorm, ...); every other cfg follows pjreddie's final commit.
ALEXEYAB_SECTIONS = {"yolo", "gaussian_yolo", "sam", "scale_channels", "implicit_add", "implicit_mul"}


def cfg_dialect(sections: list[Section]) -> str:
    """"alexeyab" for the [yolo] family's cfgs, "pjreddie" for the YOLOv2-era ones."""
    return "alexeyab" if any(sec.kind in ALEXEYAB_SECTIONS for sec in sections) else "pjreddie"


class Darknet(nn.Module):
    """A Darknet network. `forward` returns the last non-[cost] layer's output in Darknet's layout."""

    def __init__(self, sections: list[Section], cfg_path: str | Path = "<cfg>", variant: str = "exact") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.cfg_path = Path(cfg_path)
        self.sections = sections
        self.config: NetConfig = parse_net(sections[0])
        self.dialect = cfg_dialect(sections)
        shape = Shape(self.config.channels, self.config.height, self.config.width)
        self.input_shape = shape
        shapes: list[Shape] = []
        built: list[Built] = []
        flat: list[bool] = []  # outputs that are (batch, n) vectors, not (batch, c, h, w)
        for index, sec in enumerate(sections[1:]):
            ctx = Context(index, shape, shapes, self.cfg_path, self.config.batch, self.dialect, variant)
            b = build_layer(sec, ctx)
            reads = b.sources if sec.kind == "route" else b.sources + [index - 1] * (index > 0)
            reads_flat = any(flat[i] for i in reads)
            if reads_flat and sec.kind not in FLAT_INPUT and not (sec.kind == "route" and len(reads) == 1):
                raise sec.error("cannot read the flat output of a [softmax] (only [connected], [softmax], "
                                "[dropout] and [cost] can)")
            flat.append(sec.kind == "softmax" or (reads_flat and sec.kind in ("dropout", "cost", "route")))
            built.append(b)
            shapes.append(b.out)
            shape = b.out
        if not built:
            raise DarknetError("the cfg has a [net] section but no layers", cfg_path)
        for sec in sections:
            sec.warn_unused()
        self.layers = nn.ModuleList(b.module for b in built)
        self.kinds = [sec.kind for sec in sections[1:]]
        self.shapes = shapes
        self.summaries = [b.summary for b in built]
        self.flops = [b.flops for b in built]
        self.sources = [b.sources for b in built]
        needed = {i for srcs in self.sources for i in srcs}
        self._keep = [i in needed for i in range(len(built))]
        # Darknet's get_network_output skips trailing [cost] layers.
        self.output_index = max(i for i, k in enumerate(self.kinds) if k != "cost" or i == 0)
        self.register_buffer("_seen", torch.zeros((), dtype=torch.int64), persistent=True)
        self.weights_header: tuple[int, int, int] = (0, 2, 0)

    @property
    def seen(self) -> int:
        """Darknet's image counter (`*net->seen`), saved in the .weights header."""
        return int(self._seen)

    @seen.setter
    def seen(self, value: int) -> None:
        self._seen.fill_(int(value))

    @property
    def region(self) -> nn.Module | None:
        """The last [region] layer, which `detect` decodes."""
        for kind, layer in zip(reversed(self.kinds), reversed(self.layers)):
            if kind == "region":
                return layer
        return None

    def _run(self, x: Tensor, keep_all: bool) -> list[Tensor | None]:
        outputs: list[Tensor | None] = []
        for i, layer in enumerate(self.layers):
            if self.sources[i]:
                x = layer(x, outputs) if self.kinds[i] == "shortcut" else layer(outputs)
            else:
                x = layer(x)
            outputs.append(x if keep_all or self._keep[i] or i == self.output_index else None)
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, keep_all=False)[self.output_index]

    def layer_outputs(self, x: Tensor) -> list[Tensor]:
        """Every layer's output in order (index 0 = first layer after [net])."""
        return self._run(x, keep_all=True)

    def summary(self) -> str:
        """The layer table Darknet prints while building the network, and the total."""
        lines = ["layer     filters    size              input                output"]
        lines += [f"{i:5d} {s}" for i, s in enumerate(self.summaries)]
        total = sum(self.flops)
        lines.append(f"Floating Point Operations: {total}")
        lines.append(f"Floating Point Operations: {total / 1e9:.2f} Bn")
        return "\n".join(lines)

    def detect(self, images, thresh: float = 0.5, hier_thresh: float = 0.5, nms: float = 0.45,  # noqa: ANN001
               letterbox: bool = True):  # noqa: ANN201
        """Detections for an image (path or array) or a list of them: a list per image, in Darknet's
        printed order. See `pydarknet.detect.detect`."""
        from pydarknet.detect import detect

        found = detect(self, images, thresh, hier_thresh, nms, letterbox)
        return found[0] if isinstance(images, (str, Path)) or hasattr(images, "shape") else found

    def save_weights(self, path: str | Path, upto: int | None = None) -> None:
        from pydarknet.weights import save_weights

        save_weights(self, path, upto=upto)

    def load_weights(self, path: str | Path, upto: int | None = None) -> None:
        from pydarknet.weights import load_weights

        load_weights(self, path, upto=upto)


def build_network(cfg_path: str | Path, variant: str = "exact") -> Darknet:
    """The network of a cfg file: "exact" (trainable, Darknet's arithmetic) or "fast" (inference
    variants of its layers, `pydarknet.layers.registry.Context.variant`)."""
    return Darknet(parse_cfg(cfg_path), cfg_path, variant)
