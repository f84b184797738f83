"""Networks out of Darknet's formats: ONNX, TorchScript, a self-contained `pt` state dict, PyTorch source,
and `.weights` <-> `.pt` conversion."""

from pydarknet.export.codegen import codegen
from pydarknet.export.convert import (
    export_state_dict,
    load_pt,
    pt_to_weights,
    weights_to_pt,
)
from pydarknet.export.onnx import DetectionDecode, export_onnx
from pydarknet.export.torchscript import export_torchscript

__all__ = [
    "DetectionDecode",
    "codegen",
    "export_onnx",
    "export_state_dict",
    "export_torchscript",
    "load_pt",
    "pt_to_weights",
    "weights_to_pt",
]
