"""TorchScript export by tracing: the graphs are static, only the batch size varies (and stays symbolic)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from pydarknet.export.onnx import DetectionDecode, example_input, tracing
from pydarknet.fileio import atomic_write
from pydarknet.network import Darknet


def export_torchscript(net: Darknet, path: str | Path, with_decode: bool = False) -> None:
    """Write the traced eval network (`torch.jit.load(path)` runs it without pydarknet); `with_decode`
    appends the decode of the detection layers (see DetectionDecode) and returns (boxes, objectness, probs)."""
    model = DetectionDecode(net) if with_decode else net
    buf = io.BytesIO()
    with tracing(net):
        # check_trace would run the network twice more only to compare two identical traces.
        traced = torch.jit.trace(model, (example_input(net, 2),), check_trace=False)
        torch.jit.save(traced, buf)
    atomic_write(path, buf.getvalue())
