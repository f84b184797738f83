"""The full-size v2-era cfgs: build, load a weights file written for them, detect end to end; and
Darknet's `partial` files (e.g. darknet19_448.conv.23) as a training start."""

from __future__ import annotations

import pytest
import torch

import pydarknet
from conftest import ROOT
from pydarknet.cli.main import main
from pydarknet.train.loop import load_for_training

CFGS = ["yolov2-voc", "yolov2-tiny-voc", "yolov2", "yolo9000", "darknet19", "tiny-yolo-voc", "yolo-voc"]


def random_weights(cfg, path):
    torch.manual_seed(0)
    net = pydarknet.load(cfg, exact=True)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "running_var"):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
    net.save_weights(path)
    return net


@pytest.mark.parametrize("name", CFGS)
def test_full_size_cfg_end_to_end(name, tmp_path, capsys):
    cfg = ROOT / "cfg" / f"{name}.cfg"
    weights = tmp_path / f"{name}.weights"
    written = random_weights(cfg, weights)
    net = pydarknet.load(cfg, weights, exact=True)
    for a, b in zip(written.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    net.save_weights(tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == weights.read_bytes()
    if not net.heads:
        args = ["classifier", "predict", "cfg/imagenet1k.data", str(cfg), str(weights), "data/dog.jpg"]
        assert main(args) == 0
        assert len(capsys.readouterr().out.splitlines()) == 5
        return
    out = tmp_path / "pred"
    assert main(["detect", str(cfg), str(weights), "data/dog.jpg", "--json", "-out", str(out)]) == 0
    assert '"detections"' in capsys.readouterr().out
    assert out.with_suffix(".jpg").stat().st_size > 0


def test_partial_file_starts_training(tmp_path, capsys):
    cfg = ROOT / "cfg" / "yolov2-voc.cfg"
    full = tmp_path / "full.weights"
    source = random_weights(cfg, full)
    part = tmp_path / "darknet19_448.conv.23"
    assert main(["partial", str(cfg), str(full), str(part), "23"]) == 0
    assert main(["weights", "info", str(part), str(cfg)]) == 0
    assert "layers_covered: 23" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="first 23 layers"):
        net = load_for_training(cfg, part, torch.device("cpu"))
    for i in range(len(net.layers)):
        if not list(net.layers[i].parameters()):
            continue  # pools, routes, the region (its anchors come from the cfg)
        same = all(torch.equal(a, b) for a, b in zip(net.layers[i].state_dict().values(),
                                                     source.layers[i].state_dict().values()))
        assert same == (i < 23), i
