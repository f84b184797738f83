"""The full-size [yolo]-family cfgs (AlexeyAB's): they build (their layer tables are checked against Darknet's
in test_summary.py), random weights written and read back give the same file byte for byte, and a forward
on a small input runs."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import ROOT
from pydarknet.network import Darknet, build_network
from pydarknet.weights import weighted_layers, weights_bytes

CFGS = ["yolov3", "yolov3-tiny", "yolov3-spp", "yolov4", "yolov4-tiny", "yolov4-tiny-3l", "yolov4-csp",
        "yolov4-csp-swish", "yolov4x-mish", "yolov7-tiny", "yolov7"]


def quiet_build(name: str) -> Darknet:
    with warnings.catch_warnings():  # [net] options (mosaic, letter_box, ...) pydarknet does not read yet
        warnings.simplefilter("ignore")
        return build_network(ROOT / "cfg" / f"{name}.cfg")


def test_every_yolo_family_cfg_is_here():
    assert {p.stem for p in (ROOT / "cfg").glob("yolov[347]*.cfg")} == set(CFGS)


@pytest.mark.parametrize("name", CFGS)
def test_full_size_cfg(name, tmp_path):
    net = quiet_build(name)
    assert net.dialect == "alexeyab" and "yolo" in net.kinds
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if key.endswith("running_var"):
                t.uniform_(0.5, 1.5, generator=g)
            elif key.endswith(("running_mean", "bn.bias", "bn.weight")):
                t.normal_(0, 0.1, generator=g).add_(1 if key.endswith("bn.weight") else 0)
    net.seen = 123
    path = tmp_path / "random.weights"
    net.save_weights(path)
    written = {key: t.clone() for key, t in net.state_dict().items()}
    with torch.no_grad():  # read back into the same network (a second build of the big ones costs seconds)
        for _, layer in weighted_layers(net):
            for t in layer.darknet_params():
                t.zero_()
    net.load_weights(path)
    assert net.seen == 123 and net.weights_header == (0, 2, 5)
    for key, t in net.state_dict().items():
        assert torch.equal(t, written[key]), key
    assert weights_bytes(net) == path.read_bytes()
    with torch.no_grad():
        y = net.eval()(torch.rand(1, 3, 32, 32, generator=g))  # every cfg's strides divide 32
    last = max(i for i, kind in enumerate(net.kinds) if kind == "yolo")
    assert y.shape[:2] == (1, net.shapes[last].c) and torch.isfinite(y).all()


def test_partial_yolov4_tiny_conv_29_starts_training(tmp_path):
    """AlexeyAB's `partial cfg/yolov4-tiny.cfg yolov4-tiny.weights yolov4-tiny.conv.29 29`: the first 29
    layers, seen restarted at 0, its header; `detector train` then loads those layers and initialises the rest."""
    import struct

    from pydarknet.cli.main import main
    from pydarknet.train.loop import load_for_training

    cfg = ROOT / "cfg" / "yolov4-tiny.cfg"
    source = quiet_build("yolov4-tiny")
    with torch.no_grad():
        for t in source.state_dict().values():
            if t.dtype.is_floating_point:
                t.normal_(0, 0.1)
    source.seen, source.weights_header = 64000, (0, 2, 0)
    full, part = tmp_path / "yolov4-tiny.weights", tmp_path / "yolov4-tiny.conv.29"
    source.save_weights(full)
    assert main(["partial", str(cfg), str(full), str(part), "29"]) == 0
    assert struct.unpack_from("<iiiQ", part.read_bytes()) == (0, 2, 5, 0)
    counts = [sum(t.numel() for t in layer.darknet_params()) for _, layer in weighted_layers(source) if _ < 29]
    assert len(part.read_bytes()) == 20 + 4 * sum(counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.warns(UserWarning, match="first 29 layers"):
            net = load_for_training(cfg, part, torch.device("cpu"))
    for i, layer in enumerate(net.layers):
        if list(layer.parameters()):
            same = all(torch.equal(a, b) for a, b in zip(layer.state_dict().values(),
                                                         source.layers[i].state_dict().values()))
            assert same == (i < 29), i
