"""ONNX export, with an optional decode of the detection layers appended to the graph.

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

import torch
from torch import Tensor, nn

from pydarknet.errors import DarknetError
from pydarknet.fileio import atomic_write
from pydarknet.network import Darknet

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


class DetectionDecode(nn.Module):
    """The network followed by the decode of its detection heads (`Head.decode_dense`), in Darknet's
    detection order (heads in layer order; for a [region], index `anchor*H*W + row*W + col`):

    - boxes (N, B, 4): x, y (centre), w, h relative to the network input;
    - objectness (N, B) (1 with `background=1`);
    - probs (N, B, C): objectness * class probability; for a WordTree the absolute (path-multiplied)
      probability of every tree class, Darknet's `hierarchy_predictions`.

    Thresholds, the letterbox correction, the WordTree walk and NMS are left to the caller."""

    def __init__(self, net: Darknet) -> None:
        super().__init__()
        if not net.heads:
            raise DarknetError("decoding needs a network with a detection layer ([region] or [yolo])",
                               net.cfg_path)
        self.net = net
        self.indices = [i for i, _ in net.heads]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs = self.net(x, outputs=self.indices)
        decoded = [head.decode_dense(out) for (_, head), out in zip(self.net.heads, outputs)]
        return tuple(torch.cat(parts, 1) for parts in zip(*decoded))


def export_onnx(net: Darknet, path: str | Path, opset: int = 17, dynamic_batch: bool = True,
                with_decode: bool = False) -> None:
    """Write the eval network as ONNX (input `input`, output `output`, or `boxes`, `objectness`, `probs`
    with `with_decode`: see DetectionDecode), replacing `path` atomically. Darknet's BN formula, maxpool
    padding (Pad -inf + MaxPool), reorg (Reshape/Transpose) and the region activation are kept as they are."""
    if importlib.util.find_spec("onnx") is None:  # torch's exporter writes through it
        raise DarknetError("ONNX export needs the onnx package: pip install 'pydarknet[export]'")
    if opset not in OPSETS:
        raise DarknetError(f"ONNX opset {opset} is not supported: the exporter writes opsets "
                           f"{OPSETS.start} to {OPSETS.stop - 1}")
    model = DetectionDecode(net) if with_decode else net
    outputs = DECODE_OUTPUTS if with_decode else ["output"]
    axes = {name: {0: "batch"} for name in ["input", *outputs]} if dynamic_batch else None
    buf = io.BytesIO()
    with tracing(net):
        torch.onnx.export(model, (example_input(net, 2 if dynamic_batch else 1),), buf, dynamo=False,
                          opset_version=opset, input_names=["input"], output_names=outputs, dynamic_axes=axes)
    atomic_write(path, buf.getvalue())
