""".weights <-> .pt: byte-for-byte round trips, a pt file that rebuilds the network by itself and is read
without unpickling objects, `weights_info`, and the `convert` / `weights info` commands."""

from __future__ import annotations

import struct

import pytest
import torch

import pydarknet
from conftest import FIXTURES
from pydarknet.cli.main import main
from pydarknet.errors import DarknetError
from pydarknet.export import export_state_dict, load_pt, pt_to_weights, weights_to_pt
from pydarknet.network import build_network
from pydarknet.weights import expected_floats, weights_info

NETS = ["mini_voc", "mini_tiny", "mini_cls", "mini_9k"]
CONNECTED_CFG = ("[net]\nwidth=4\nheight=4\nchannels=3\n"
                 "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
                 "[connected]\noutput=6\nactivation=linear\n"
                 "[connected]\noutput=5\nbatch_normalize=1\nactivation=logistic\n")


def randomize(net: pydarknet.Darknet) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            if t.is_floating_point():
                t.uniform_(0.5, 1.5, generator=g) if name.endswith("running_var") else t.normal_(generator=g)


@pytest.mark.parametrize("name", NETS)
def test_fixture_weights_round_trip_byte_for_byte(name, tmp_path):
    cfg, weights = FIXTURES / name / "net.cfg", FIXTURES / name / "net.weights"
    weights_to_pt(cfg, weights, tmp_path / "net.pt")
    pt_to_weights(tmp_path / "net.pt", tmp_path / "back.weights")
    assert (tmp_path / "back.weights").read_bytes() == weights.read_bytes()
    net, rebuilt = pydarknet.load(cfg, weights, exact=True), load_pt(tmp_path / "net.pt")
    s = net.input_shape
    x = torch.rand(2, s.c, s.h, s.w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    assert not rebuilt.training and rebuilt.weights_header == net.weights_header


def test_pt_holds_plain_data_only(tmp_path):
    net = pydarknet.load(FIXTURES / "mini_9k" / "net.cfg", FIXTURES / "mini_9k" / "net.weights", exact=True)
    export_state_dict(net, tmp_path / "net.pt")
    payload = torch.load(tmp_path / "net.pt", weights_only=True)
    assert set(payload) == {"format", "version", "cfg", "cfg_name", "weights_header", "upto", "state_dict",
                            "tables"}
    assert "tree=data/9k.tree" in payload["cfg"] and payload["cfg_name"] == "net.cfg"
    assert payload["state_dict"].keys() == net.state_dict().keys()
    perm, inverse = payload["tables"]["layers.12.tree_perm"], payload["tables"]["layers.12.tree_inverse"]
    assert torch.equal(perm[inverse], torch.arange(9418))


@pytest.mark.parametrize(("header", "seen"), [((0, 1, 0), 12345), ((0, 2, 0), 2**40 + 3), ((1001, 0, 0), 77)])
def test_header_versions_round_trip(header, seen, tmp_path):
    """Version 0.1 stores seen as int32; major > 1000 also stores connected weights transposed."""
    cfg = tmp_path / "fc.cfg"
    cfg.write_text(CONNECTED_CFG)
    net = build_network(cfg)
    randomize(net)
    net.weights_header, net.seen = header, seen
    net.save_weights(tmp_path / "fc.weights")
    weights_to_pt(cfg, tmp_path / "fc.weights", tmp_path / "fc.pt")
    pt_to_weights(tmp_path / "fc.pt", tmp_path / "back.weights")
    assert (tmp_path / "back.weights").read_bytes() == (tmp_path / "fc.weights").read_bytes()
    info = weights_info(tmp_path / "fc.weights", cfg)
    assert info["version"] == ".".join(map(str, header)) and info["seen"] == seen and info["fits"]
    x = torch.rand(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(load_pt(tmp_path / "fc.pt")(x), net.eval()(x))


def test_weights_info_full_and_partial(tmp_path):
    cfg, weights = FIXTURES / "mini_voc" / "net.cfg", FIXTURES / "mini_voc" / "net.weights"
    floats = int((FIXTURES / "mini_voc" / "gen_weights_stdout.txt").read_text().split()[1])
    info = weights_info(weights)
    assert info == {"version": "0.2.0", "seen": 0, "header_bytes": 20, "floats": floats, "trailing_bytes": 0}
    info = weights_info(weights, cfg)
    assert info["fits"] and info["expected_floats"] == floats
    assert info["layers_covered"] == info["layers"] == 18

    net = pydarknet.load(cfg, weights, exact=True)
    net.save_weights(tmp_path / "voc.conv.8", upto=8)  # layers 0-7; layer 8 is a conv
    info = weights_info(tmp_path / "voc.conv.8", cfg)
    assert not info["fits"] and info["layers_covered"] == 8 and info["ends_at_layer"]
    assert info["floats"] == expected_floats(net, 8) and info["expected_floats"] == floats
    weights_to_pt(cfg, tmp_path / "voc.conv.8", tmp_path / "partial.pt", upto=info["layers_covered"])
    pt_to_weights(tmp_path / "partial.pt", tmp_path / "back.conv.8")
    assert (tmp_path / "back.conv.8").read_bytes() == (tmp_path / "voc.conv.8").read_bytes()

    with (tmp_path / "cut").open("wb") as fh:  # 5 floats into layer 8, then half a float
        fh.write((tmp_path / "voc.conv.8").read_bytes() + b"\0" * 22)
    info = weights_info(tmp_path / "cut", cfg)
    assert (info["layers_covered"], info["ends_at_layer"], info["trailing_bytes"]) == (8, False, 2)


def test_weights_info_darknet19_conv23(tmp_path):
    """darknet19_448.conv.23 (Darknet's pretrained backbone): the first 23 layers; a sparse stand-in file."""
    cfg = "cfg/darknet19_448.cfg"
    need = expected_floats(build_network(cfg), 23)
    path = tmp_path / "darknet19_448.conv.23"
    with path.open("wb") as fh:
        fh.write(struct.pack("<iiiQ", 0, 2, 0, 32013312))
        fh.truncate(20 + 4 * need)
    info = weights_info(path, cfg)
    assert info["seen"] == 32013312 and info["floats"] == need
    assert (info["layers_covered"], info["ends_at_layer"], info["fits"]) == (23, True, False)


class _Payload:
    def __init__(self, marker) -> None:  # noqa: ANN001
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (self.marker.touch, ())  # runs on unpickling


def test_untrusted_pt_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "pydarknet-pt", "version": 1, "payload": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(DarknetError, match="not a pydarknet .pt file"):
        load_pt(tmp_path / "evil.pt")
    assert not marker.exists()


def test_bad_pt_files(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(DarknetError, match="no format="):
        load_pt(tmp_path / "other.pt")
    with pytest.raises(DarknetError, match="not a pydarknet .pt file"):
        load_pt(FIXTURES / "mini_voc" / "net.weights")
    with pytest.raises(DarknetError, match="no such file"):
        load_pt(tmp_path / "missing.pt")
    net = pydarknet.load(FIXTURES / "mini_tiny" / "net.cfg", exact=True)
    export_state_dict(net, tmp_path / "net.pt")
    payload = torch.load(tmp_path / "net.pt", weights_only=True)
    payload["state_dict"]["layers.0.conv.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "damaged.pt")
    with pytest.raises(DarknetError, match="does not match its cfg"):
        load_pt(tmp_path / "damaged.pt")
    with pytest.raises(DarknetError, match="is a .pt file"):
        weights_info(tmp_path / "net.pt")


def test_cli_convert_and_info(tmp_path, capsys):
    cfg, weights = str(FIXTURES / "mini_cls" / "net.cfg"), str(FIXTURES / "mini_cls" / "net.weights")
    pt, back = str(tmp_path / "cls.pt"), str(tmp_path / "cls.weights")
    assert main(["convert", weights, pt]) == 2  # .weights input needs --cfg
    assert "--cfg" in capsys.readouterr().err
    assert main(["convert", weights, pt, "--cfg", cfg]) == 0
    assert main(["convert", pt, back, "--cfg", cfg]) == 2  # the pt carries its cfg
    assert main(["convert", pt, back]) == 0
    assert (tmp_path / "cls.weights").read_bytes() == (FIXTURES / "mini_cls" / "net.weights").read_bytes()
    (tmp_path / "cls.weights").write_bytes(b"keep")
    capsys.readouterr()
    assert main(["convert", pt, back]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err and (tmp_path / "cls.weights").read_bytes() == b"keep"
    assert main(["convert", pt, back, "--force"]) == 0
    assert (tmp_path / "cls.weights").read_bytes() == (FIXTURES / "mini_cls" / "net.weights").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls.pt", "cls.weights"]  # no temporaries
    assert main(["convert", str(tmp_path / "missing"), back]) == 2

    capsys.readouterr()
    assert main(["weights", "info", weights]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["version: 0.2.0", "seen: 0"]
    assert main(["weights", "info", weights, cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "fits: yes" in lines and "layers_covered: 11" in lines
