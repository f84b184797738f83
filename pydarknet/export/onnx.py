"""ONNX export, with an optional region decode appended to the graph.

Uses torch's TorchScript-based exporter (`dynamo=False`). The torch.export-based one (torch's default
since 2.9) needs the extra `onnxscript` package and, measured with torch 2.13 on these networks, gives
the same outputs but exports 10-20x slower (the yolo9000 fixture: 24 s against 1.5 s, its WordTree
softmax unrolls into 41 group-size buckets). Tracing records Python-level loops and shapes as they run,
which is all these static graphs need; the batch dimension is kept symbolic through `dynamic_axes`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pydarknet.errors import DarknetError
from pydarknet.network import Darknet
from pydarknet.weights import atomic_write

DECODE_OUTPUTS = ["boxes", "objectness", "probs"]
# Opsets the TorchScript-based exporter writes (20 is its last: new opsets go to the other exporter) from 9,
# below which it cannot constant-fold; checked up front because torch reports an unknown opset only after
# dumping the whole graph. Each gives the same outputs on the fixture networks.
OPSETS = range(9, 21)

# Messages torch emits on every trace of these networks; none of them is actionable here.
_EXPECTED_WARNINGS = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed",
    r"`torch\.jit\.\w+` is deprecated",
    r"torch\.from_numpy results are registered as constants",  # WordTree index tables: constant indeed
    r"Constant folding - Only steps=1",  # the reversed pads slice of F.pad: folded by onnxruntime
)


@contextlib.contextmanager
def tracing(net: Darknet) -> Iterator[None]:
    """Eval mode and no grad while tracing (restoring train mode after); torch's known warnings muted."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            for message in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        net.train(was_training)


def example_input(net: Darknet, batch: int) -> Tensor:
    device = next(net.buffers()).device
    shape = net.input_shape
    return torch.zeros(batch, shape.c, shape.h, shape.w, device=device)


class RegionDecode(nn.Module):
    """The network followed by the decode of its [region] output, in Darknet's detection order
    (index `anchor*H*W + row*W + col`):

    - boxes (N, A*H*W, 4): x, y (centre), w, h relative to the network input;
    - objectness (N, A*H*W) (1 with `background=1`);
    - probs (N, A*H*W, C): objectness * class probability; for a WordTree the absolute (path-multiplied)
      probability of every tree class, Darknet's `hierarchy_predictions`.

    Thresholds, the letterbox correction, the WordTree walk and NMS are left to the caller."""

    def __init__(self, net: Darknet) -> None:
        super().__init__()
        if net.kinds[net.output_index] != "region":
            raise DarknetError("decoding needs a network whose output is a [region] layer", net.cfg_path)
        region = net.layers[net.output_index]
        p = region.params
        if region.tree is not None and p.background:
            raise DarknetError("decoding a WordTree region with background=1 is not supported", net.cfg_path)
        self.net = net
        self.n, self.classes, self.coords, self.background = p.n, p.classes, p.coords, p.background
        shape = net.shapes[net.output_index]
        self.h, self.w = shape.h, shape.w
        cell = torch.arange(self.h * self.w)
        self.register_buffer("col", (cell % self.w).float(), persistent=False)
        self.register_buffer("row", torch.div(cell, self.w, rounding_mode="floor").float(), persistent=False)
        anchors = region.biases.detach().reshape(p.n, 2, 1)
        self.register_buffer("anchor_w", anchors[:, 0].clone(), persistent=False)
        self.register_buffer("anchor_h", anchors[:, 1].clone(), persistent=False)
        self.levels = 0
        if region.tree is not None:
            parent, self.levels = _parent_index(region.tree.parent)
            self.register_buffer("parent", torch.from_numpy(parent), persistent=False)

    def hierarchy(self, cls: Tensor) -> Tensor:
        """Absolute tree probabilities of (N, A, C, cells) group softmaxes, gathers only (exportable).

        Pass k makes the depth-k nodes final: each node is its own prob times its parent's final value,
        the single float32 multiply Darknet's in-place loop does, so the result is bit-identical."""
        ones = torch.ones_like(cls[:, :, :1])  # index C: the parent of a root
        absolute = cls
        for _ in range(self.levels):
            absolute = cls * torch.cat([absolute, ones], 2).index_select(2, self.parent)
        return absolute

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.net(x)
        batch = out.shape[0]
        v = out.reshape(batch, self.n, self.coords + 1 + self.classes, self.h * self.w)
        bx = (self.col + v[:, :, 0]) / self.w
        by = (self.row + v[:, :, 1]) / self.h
        bw = torch.exp(v[:, :, 2]) * self.anchor_w / self.w
        bh = torch.exp(v[:, :, 3]) * self.anchor_h / self.h
        boxes = torch.stack([bx, by, bw, bh], 3).reshape(batch, -1, 4)
        cls = v[:, :, self.coords + 1 :]
        if self.levels:
            cls = self.hierarchy(cls)
        if self.background:
            objectness = torch.ones_like(v[:, :, 0]).reshape(batch, -1)
            probs = cls.transpose(2, 3).reshape(batch, -1, self.classes)
        else:
            objectness = v[:, :, self.coords].reshape(batch, -1)
            probs = objectness[:, :, None] * cls.transpose(2, 3).reshape(batch, -1, self.classes)
        return boxes, objectness, probs


def _parent_index(parent: np.ndarray) -> tuple[np.ndarray, int]:
    """Parents with roots pointing at an extra index n, and the tree depth (read_tree: parent[j] < j)."""
    n = len(parent)
    depth = np.zeros(n, dtype=np.int64)
    for j in range(n):
        if parent[j] >= 0:
            depth[j] = depth[parent[j]] + 1
    return np.where(parent >= 0, parent, n).astype(np.int64), int(depth.max())


def export_onnx(net: Darknet, path: str | Path, opset: int = 17, dynamic_batch: bool = True,
                with_decode: bool = False) -> None:
    """Write the eval network as ONNX (input `input`, output `output`, or `boxes`, `objectness`, `probs`
    with `with_decode`: see RegionDecode), replacing `path` atomically. Darknet's BN formula, maxpool
    padding (Pad -inf + MaxPool), reorg (Reshape/Transpose) and the region activation are kept as they are."""
    if importlib.util.find_spec("onnx") is None:  # torch's exporter writes through it
        raise DarknetError("ONNX export needs the onnx package: pip install 'pydarknet[export]'")
    if opset not in OPSETS:
        raise DarknetError(f"ONNX opset {opset} is not supported: the exporter writes opsets "
                           f"{OPSETS.start} to {OPSETS.stop - 1}")
    model = RegionDecode(net) if with_decode else net
    outputs = DECODE_OUTPUTS if with_decode else ["output"]
    axes = {name: {0: "batch"} for name in ["input", *outputs]} if dynamic_batch else None
    buf = io.BytesIO()
    with tracing(net):
        torch.onnx.export(model, (example_input(net, 2 if dynamic_batch else 1),), buf, dynamo=False,
                          opset_version=opset, input_names=["input"], output_names=outputs, dynamic_axes=axes)
    atomic_write(path, buf.getvalue())
