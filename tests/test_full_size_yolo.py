"""The full-size [yolo]-family cfgs (AlexeyAB's): they build (their layer tables are checked against Darknet's
in test_summary.py), random weights written and read back give the same file byte for byte, a forward
on a small input runs, and they detect end to end (CLI and API) at their input size."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

import pydarknet
from conftest import ROOT
from pydarknet.alexeyab_text import draw_detections_v3_lines
from pydarknet.cli.main import main
from pydarknet.detector import Detector
from pydarknet.image import load_image
from pydarknet.names import read_names
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


DETECT_CFGS = ["yolov3", "yolov3-tiny", "yolov4", "yolov4-tiny", "yolov4-csp-swish", "yolov7-tiny"]


def detecting_weights(net: Darknet, image: Path, path: Path, seed: int = 0) -> None:
    """Random weights under which the net detects some objects in `image`: He-scaled convs with BatchNorm
    near identity, then each conv feeding a [yolo] rescaled per filter so that on this image its outputs
    (before its activation) are N(0, 1) for the box entries, N(-6, 2) for objectness and N(-3, 2) for the
    classes: about 0.7% of the boxes pass .25."""
    g = torch.Generator().manual_seed(seed)
    head_convs = {i - 1: head for i, head in net.heads}
    with torch.no_grad():
        for layer in net.layers:
            conv = getattr(layer, "conv", None)
            if conv is None:
                continue
            conv.weight.normal_(0, math.sqrt(2 / conv.weight[0].numel()), generator=g)
            if layer.bn is not None:
                layer.bn.weight.uniform_(0.5, 1.5, generator=g)
                layer.bn.bias.normal_(0, 0.1, generator=g)
                layer.bn.running_mean.normal_(0, 0.1, generator=g)
                layer.bn.running_var.uniform_(0.5, 1.5, generator=g)
            else:
                conv.bias.zero_()
        net.eval()
        logits = {}
        hooks = [net.layers[i].conv.register_forward_hook(lambda m, a, y, i=i: logits.__setitem__(i, y))
                 for i in head_convs]
        net(torch.from_numpy(Detector(net).network_input(load_image(image)))[None])
        for hook in hooks:
            hook.remove()
        for i, head in head_convs.items():
            entries = 5 + head.params.classes
            mean = torch.tensor([0.0] * 4 + [-6.0] + [-3.0] * head.params.classes).repeat(head.params.n)
            std = torch.tensor([1.0] * 4 + [2.0] * (entries - 4)).repeat(head.params.n)
            y = logits[i][0].flatten(1)
            scale = std / y.std(1)
            conv = net.layers[i].conv
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_(mean - y.mean(1) * scale)
    net.save_weights(path)


@pytest.mark.parametrize("name", DETECT_CFGS)
def test_full_size_cfg_detects(name, tmp_path, capsys):
    """AlexeyAB's full-size cfgs end to end at their input size, with random weights written by pydarknet:
    `detector test` (-ext_output, -out JSON) prints what the API's detections print."""
    cfg, image = ROOT / "cfg" / f"{name}.cfg", ROOT / "data" / "dog.jpg"
    detecting_weights(quiet_build(name), image, tmp_path / "random.weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dets = pydarknet.load(cfg, tmp_path / "random.weights").detect(image, thresh=0.25)
        assert main(["detector", "test", "cfg/coco.data", str(cfg), str(tmp_path / "random.weights"), str(image),
                     "-dont_show", "-ext_output", "-out", str(tmp_path / "result.json"), "--no-draw"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = read_names(ROOT / "data" / "coco.names")
    assert 0 < len(dets) < 500
    assert out[1:] == draw_detections_v3_lines(dets, names, 0.25, (768, 576))
    (record,) = json.loads((tmp_path / "result.json").read_text())
    assert len(record["objects"]) == sum(len(d.classes) for d in dets)
