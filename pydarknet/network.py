"""Darknet(nn.Module): the layer graph built from cfg sections, with route/shortcut wiring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from pydarknet import layers as _layers  # noqa: F401  (fills the registry)
from pydarknet.cfg import Section, parse_cfg
from pydarknet.errors import DarknetError
from pydarknet.heads import Head
from pydarknet.heads import region as _region  # noqa: F401  (registers [region])
from pydarknet.heads import yolo as _yolo  # noqa: F401  (registers [yolo])
from pydarknet.layers.activations import ACTIVATION_DEFS
from pydarknet.layers.conv import alexeyab_bflops
from pydarknet.layers.registry import VARIANTS, Built, Context, Shape, build_layer
from pydarknet.netconfig import NetConfig, parse_net

ALEXEYAB_ACTIVATIONS = {name for name, d in ACTIVATION_DEFS.items() if d.alexeyab}
# Layers that take Darknet's flat vectors as they are. A [softmax] output has no spatial layout (Darknet
# leaves its out_w/out_h/out_c at 0), so convolutions, pools, routes with others etc. cannot follow it.
FLAT_INPUT = {"connected", "softmax", "dropout", "cost"}


if TYPE_CHECKING:
    from pydarknet.detection import Detection
    from pydarknet.detector import ImageLike

# What only AlexeyAB's Darknet has: a cfg with one of its sections, activations or options follows its
# semantics (BatchNorm epsilon, weights header, summary, detection with plain resize and fused BatchNorm,
# ...); every other cfg follows pjreddie's final commit.
ALEXEYAB_SECTIONS = {"yolo", "Gaussian_yolo", "sam", "scale_channels", "implicit", "contrastive",
                     "local_avgpool", "local_avg", "reorg3d", "conv_lstm", "history", "empty", "silence"}
ALEXEYAB_OPTIONS = {("route", "groups"), ("route", "group_id"), ("shortcut", "weights_type"),
                    ("shortcut", "weights_normalization"), ("maxpool", "maxpool_depth"), ("maxpool", "stride_x"),
                    ("maxpool", "stride_y"), ("convolutional", "stride_x"), ("convolutional", "stride_y")}
# Options AlexeyAB reads in every layer (parse_network_cfg_custom): training controls, kept per layer for the
# trainer; Darknet's defaults.
LAYER_TRAINING_OPTIONS = {"stopbackward": 0, "dont_update": 0, "burnin_update": 0, "train_only_bn": 0,
                          "onlyforward": 0, "clip": 0.0, "learning_rate": 1.0}


def cfg_dialect(sections: list[Section]) -> str:
    """"alexeyab" for the [yolo] family's cfgs (and any cfg using what only AlexeyAB's Darknet knows),
    "pjreddie" for the YOLOv2-era ones."""
    for sec in sections[1:]:
        activation = sec.options.get("activation")
        if (sec.kind in ALEXEYAB_SECTIONS or any((sec.kind, key) in ALEXEYAB_OPTIONS for key in sec.options)
                or (activation is not None and activation.value in ALEXEYAB_ACTIVATIONS)
                or (sec.kind == "shortcut" and "," in getattr(sec.options.get("from"), "value", ""))):
            return "alexeyab"
    return "pjreddie"


def layer_training_options(sec: Section) -> dict[str, float]:
    """AlexeyAB's per-layer training options (learning_rate is a multiplier of the [net] rate)."""
    return {key: sec.get_float(key, default) for key, default in LAYER_TRAINING_OPTIONS.items()}


class Darknet(nn.Module):
    """A Darknet network. `forward` returns the last non-[cost] layer's output in Darknet's layout."""

    def __init__(self, sections: list[Section], cfg_path: str | Path = "<cfg>", variant: str = "exact") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.cfg_path = Path(cfg_path)
        self.sections = sections
        self.dialect = cfg_dialect(sections)
        self.config: NetConfig = parse_net(sections[0], self.dialect)
        shape = Shape(self.config.channels, self.config.height, self.config.width)
        self.input_shape = shape
        shapes: list[Shape] = []
        built: list[Built] = []
        flat: list[bool] = []  # outputs that are (batch, n) vectors, not (batch, c, h, w)
        # AlexeyAB's per-layer training options ({} per layer for pjreddie cfgs, which have none)
        self.layer_training: list[dict[str, float]] = []
        for index, sec in enumerate(sections[1:]):
            ctx = Context(index, shape, shapes, self.cfg_path, self.config.batch, self.dialect, variant,
                          net=self.config)
            b = build_layer(sec, ctx)
            self.layer_training.append(layer_training_options(sec) if self.dialect == "alexeyab" else {})
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
        # What save_weights writes: the header of the file loaded, else the version its Darknet writes.
        self.weights_header: tuple[int, int, int] = (0, 2, 5) if self.dialect == "alexeyab" else (0, 2, 0)

    @property
    def seen(self) -> int:
        """Darknet's image counter (`*net->seen`), saved in the .weights header."""
        return int(self._seen)

    @seen.setter
    def seen(self, value: int) -> None:
        self._seen.fill_(int(value))

    @property
    def heads(self) -> list[tuple[int, Head]]:
        """The detection heads ([region], [yolo]) with their layer indices, in layer order."""
        return [(i, layer) for i, layer in enumerate(self.layers) if isinstance(layer, Head)]

    @property
    def device(self) -> torch.device:
        return self._seen.device

    def _run(self, x: Tensor, keep: set[int] | None) -> list[Tensor | None]:
        """Every layer's output, or only those in `keep` (and those later layers read) when it is given."""
        outputs: list[Tensor | None] = []
        for i, layer in enumerate(self.layers):
            if self.sources[i]:
                x = layer(x, outputs) if getattr(layer, "takes_input", False) else layer(outputs)
            else:
                x = layer(x)
            outputs.append(x if keep is None or self._keep[i] or i in keep else None)
        return outputs

    def forward(self, x: Tensor, outputs: list[int] | None = None) -> Tensor | list[Tensor]:
        """The output layer's output, or the list of the outputs of the layers `outputs` (e.g. every head)."""
        run = self._run(x, set([self.output_index] if outputs is None else outputs))
        return run[self.output_index] if outputs is None else [run[k] for k in outputs]

    def layer_outputs(self, x: Tensor) -> list[Tensor]:
        """Every layer's output in order (index 0 = first layer after [net])."""
        return self._run(x, None)

    def summary(self) -> str:
        """The layer table Darknet prints while building the network, and the total."""
        if self.dialect == "alexeyab":
            lines = ["   layer   filters  size/strd(dil)      input                output"]
            lines += [f"{i:4d} {s}" for i, s in enumerate(self.summaries)]
            total = np.float32(0)  # parse_network_cfg_custom sums the layers' float BFLOPs in a float
            for flops in self.flops:
                total += np.float32(alexeyab_bflops(flops))
            lines.append(f"Total BFLOPS {float(total):5.3f} ")
            return "\n".join(lines)
        lines = ["layer     filters    size              input                output"]
        lines += [f"{i:5d} {s}" for i, s in enumerate(self.summaries)]
        total = sum(self.flops)
        lines.append(f"Floating Point Operations: {total}")
        lines.append(f"Floating Point Operations: {total / 1e9:.2f} Bn")
        return "\n".join(lines)

    def detect(self, images: ImageLike | Sequence[ImageLike], thresh: float = 0.5, hier_thresh: float = 0.5,
               nms: float = 0.45, **options: Any) -> list[Detection] | list[list[Detection]]:
        """Detections for an image (a path, or an HWC uint8 RGB / CHW float array) or a list of them (a list
        per image), in Darknet's printed order, as `darknet detector test` finds them. Other options:
        `pydarknet.detector.Detector`'s."""
        from pydarknet.detector import Detector

        detector = Detector(self, thresh=thresh, hier_thresh=hier_thresh, nms=nms, **options)
        single = isinstance(images, (str, Path)) or hasattr(images, "shape")
        found = [r.detections for r in detector.run([images] if single else images)]
        return found[0] if single else found

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
