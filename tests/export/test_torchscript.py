"""TorchScript export: the traced network, loaded back with torch.jit.load, gives pydarknet's outputs."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import ALEXEYAB_ZOO_CFG, FIXTURES, YOLO_NETS, fixture_batch, fixture_net, text_net
from pydarknet.cli.main import main
from pydarknet.export import DetectionDecode, export_torchscript, load_pt

NETS = ["mini_voc", "mini_tiny", "mini_cls", "mini_9k"]
TOL = 1e-4

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


@pytest.mark.parametrize("name", NETS + YOLO_NETS)
def test_loaded_trace_matches_pytorch(name, tmp_path):
    net = fixture_net(name)
    export_torchscript(net, tmp_path / "net.ts")
    traced = torch.jit.load(str(tmp_path / "net.ts"))
    for batch in (1, 3):  # traced at batch 2: the batch size stays symbolic
        x = fixture_batch(net, name, batch)
        with torch.no_grad():
            got, expected = traced(x), net(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOL


def test_alexeyab_layers(tmp_path):
    net = text_net(ALEXEYAB_ZOO_CFG)
    export_torchscript(net, tmp_path / "zoo.ts")
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (torch.jit.load(str(tmp_path / "zoo.ts"))(x) - net(x)).abs().max().item() <= TOL


@pytest.mark.parametrize("name", ["mini_9k", "mini_v4tiny", "mini_v7"])
def test_with_decode(name, tmp_path):
    net = fixture_net(name)
    export_torchscript(net, tmp_path / "net.ts", with_decode=True)
    traced = torch.jit.load(str(tmp_path / "net.ts"))
    x = fixture_batch(net, name, 3)
    with torch.no_grad():
        got, expected = traced(x), DetectionDecode(net)(x)
    for a, b in zip(got, expected, strict=True):
        assert (a - b).abs().max().item() <= TOL


def test_cli_export_torchscript_and_pt(tmp_path):
    cfg, weights = str(FIXTURES / "mini_tiny" / "net.cfg"), str(FIXTURES / "mini_tiny" / "net.weights")
    assert main(["export", cfg, weights, "-o", str(tmp_path / "net.ts")]) == 0
    assert main(["export", cfg, weights, "-o", str(tmp_path / "model"), "--format", "torchscript"]) == 0
    assert main(["export", cfg, weights, "-o", str(tmp_path / "net.pt")]) == 0
    net = fixture_net("mini_tiny")
    x = fixture_batch(net, "mini_tiny", 2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated")  # main() reset the filters
        expected = net(x)
        for path in ("net.ts", "model"):
            assert (torch.jit.load(str(tmp_path / path))(x) - expected).abs().max().item() <= TOL
        assert torch.equal(load_pt(tmp_path / "net.pt")(x), expected)
