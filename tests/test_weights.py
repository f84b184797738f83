"""Weights I/O beyond the fixtures: the transposed [connected] layout of headers past 1000, and reading in
place (the file is never held whole)."""

from __future__ import annotations

import numpy as np
import torch

import pydarknet
from pydarknet.weights import HEADER_INTS, load_weights

CFG = """[net]
width=3
height=2
channels=2

[connected]
output=4
activation=linear
"""


def test_transposed_connected_weights_round_trip(tmp_path):
    cfg = tmp_path / "fc.cfg"
    cfg.write_text(CFG)
    net = pydarknet.load(cfg, exact=True)
    with torch.no_grad():
        net.layers[0].fc.weight.copy_(torch.arange(48, dtype=torch.float32).view(4, 12))
    net.weights_header = (0, 1001, 0)  # Darknet transposes a connected layer's matrix past version 1000
    net.save_weights(tmp_path / "fc.weights")
    data = (tmp_path / "fc.weights").read_bytes()
    floats = np.frombuffer(data, dtype="<f4", offset=HEADER_INTS.size + 4)  # 0.1001: 32-bit seen
    biases, matrix = floats[:4], floats[4:52]
    assert np.array_equal(matrix, np.arange(48, dtype=np.float32).reshape(4, 12).T.ravel())
    again = pydarknet.load(cfg, exact=True)
    load_weights(again, tmp_path / "fc.weights")
    assert torch.equal(again.layers[0].fc.weight, net.layers[0].fc.weight)
    assert torch.equal(again.layers[0].fc.bias, torch.from_numpy(biases.copy()))
    assert again.weights_header == (0, 1001, 0)


def test_untransposed_connected_weights_are_read_in_place(tmp_path):
    cfg = tmp_path / "fc.cfg"
    cfg.write_text(CFG)
    net = pydarknet.load(cfg, exact=True)
    torch.manual_seed(0)
    with torch.no_grad():
        net.layers[0].fc.weight.normal_()
    net.save_weights(tmp_path / "fc.weights")
    again = pydarknet.load(cfg, exact=True)
    before = again.layers[0].fc.weight.data_ptr()
    load_weights(again, tmp_path / "fc.weights")
    assert again.layers[0].fc.weight.data_ptr() == before
    assert torch.equal(again.layers[0].fc.weight, net.layers[0].fc.weight)
