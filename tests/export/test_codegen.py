"""codegen: the generated class, filled from a pt export, gives pydarknet's outputs bit for bit (the same
torch ops in the same order), for the fixture nets and for cfgs that use every layer kind and activation."""

from __future__ import annotations

import ast

import numpy as np
import pytest
import torch

import pydarknet
from conftest import ALEXEYAB_ZOO_CFG, FIXTURES, YOLO_NETS, fixture_dir, fixture_net, text_net
from pydarknet.cli.main import main
from pydarknet.export import codegen, export_state_dict
from pydarknet.layers import BUILDERS
from pydarknet.layers.activations import ACTIVATION_DEFS, ACTIVATIONS

NETS = ["mini_voc", "mini_tiny", "mini_cls", "mini_9k"]

_ACTS = [a for a, d in ACTIVATION_DEFS.items() if not d.alexeyab and a != "leaky"]
# Every layer kind pydarknet builds for pjreddie's cfgs; shortcuts in the plain, the scaled and both strided forms.
ZOO_CFG = "\n".join([
    "[net]\nwidth=16\nheight=16\nchannels=3",
    "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky",
    *(f"[convolutional]\nbatch_normalize={i % 2}\nfilters=4\nsize=1\nstride=1\nactivation={a}"
      for i, a in enumerate(_ACTS)),
    "[shortcut]\nfrom=-2\nactivation=leaky",
    "[shortcut]\nfrom=0\nalpha=0.5\nbeta=2\nactivation=linear",
    "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\ngroups=2\nactivation=leaky",
    f"[shortcut]\nfrom={len(_ACTS) + 2}\nactivation=linear",  # 16x16x4 into 8x8x8: stride 2
    "[upsample]\nstride=2\nscale=0.5",
    "[shortcut]\nfrom=-2\nbeta=0.25\nactivation=linear",  # 8x8x8 into 16x16x8: sample 2
    "[maxpool]\nsize=3\nstride=2",  # padding 2: one -inf column/row before
    "[reorg]\nstride=2",
    "[reorg]\nstride=2\nreverse=1",
    "[route]\nlayers=-1,-3",
    "[dropout]\nprobability=.5",
    "[avgpool]",
    "[connected]\noutput=24\nbatch_normalize=1\nactivation=leaky",
    "[connected]\noutput=20\nactivation=linear",
    "[dropout]\nprobability=.2",
    "[softmax]\ngroups=2\ntemperature=2",
    "[cost]\ntype=sse",
])
REGION_CFG = ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=16\nsize=1\nactivation=linear\n"
              "[region]\nnum=2\nclasses=3\ncoords=4\nanchors=1,1,2,2\nsoftmax={}\nbackground={}\n")
TREE_SOFTMAX_CFG = ("[net]\nwidth=2\nheight=2\nchannels=3\n[convolutional]\nfilters=9418\nsize=2\n"
                    "activation=linear\n[softmax]\ntree=data/9k.tree\n")
CFGS = {"zoo": ZOO_CFG, "alexeyab_zoo": ALEXEYAB_ZOO_CFG, "tree_softmax": TREE_SOFTMAX_CFG,
        **{f"region_softmax{s}_background{b}": REGION_CFG.format(s, b) for s, b in ((0, 0), (1, 1), (0, 1))}}


def generated_model(net: pydarknet.Darknet, tmp_path) -> torch.nn.Module:  # noqa: ANN001
    namespace: dict = {}
    exec(compile(codegen(net), "generated.py", "exec"), namespace)  # noqa: S102 - our own output
    model = namespace["DarknetModel"]()
    export_state_dict(net, tmp_path / "net.pt")
    model.load_pydarknet_state(torch.load(tmp_path / "net.pt", weights_only=True))
    return model.eval()


def inputs(net: pydarknet.Darknet, batch: int) -> torch.Tensor:
    s = net.input_shape
    return torch.rand(batch, s.c, s.h, s.w, generator=torch.Generator().manual_seed(batch))


@pytest.mark.parametrize("name", NETS + YOLO_NETS)
def test_fixture_nets_bit_identical(name, tmp_path):
    net = fixture_net(name)
    model = generated_model(net, tmp_path)
    s = net.input_shape
    images = [np.load(p) for p in sorted(fixture_dir(name).glob("infer_*/input.npy"))]
    x = torch.from_numpy(np.stack([a for a in images if a.shape == (s.c, s.h, s.w)]))
    with torch.no_grad():
        for batch in (x, inputs(net, 3)):
            assert torch.equal(model(batch), net(batch))


@pytest.mark.parametrize("name", list(CFGS))
def test_every_layer_kind_bit_identical(name, tmp_path):
    net = text_net(CFGS[name])
    model = generated_model(net, tmp_path)
    x = inputs(net, 3)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(model(x), expected)
    assert expected.abs().max() > 0 and torch.isfinite(expected).all()


def test_zoos_cover_every_kind_and_activation():
    net, alexeyab = text_net(ZOO_CFG), text_net(ALEXEYAB_ZOO_CFG)
    assert (net.dialect, alexeyab.dialect) == ("pjreddie", "alexeyab")
    used = {layer.act.name for zoo in (net, alexeyab) for layer in zoo.layers if hasattr(layer, "act")}
    assert used == set(ACTIVATIONS)
    assert set(net.kinds) | set(alexeyab.kinds) | {"region"} == set(BUILDERS) - {"conv"}
    src = codegen(net)
    assert "add_(" in src and "F.pad(" in src and "permute(0, 3, 4, 1, 5, 2)" in src  # the rarer forms
    src = codegen(alexeyab)
    for form in ("torch.clamp(self.shortcut11_weights, min=0.001)", "torch.cat([x[:, :8] + x12[:, :8]",
                 ".chunk(2, dim=1)[1]", "amax(1)", "sum(dim=(3, 5))", "torch.sqrt(var.double() + 1e-05)",
                 "nn.Conv2d(3, 6, 3, (2, 1), 1, bias=False)", "xy * 2.0 + -0.5"):
        assert form in src, form


@pytest.mark.parametrize("name", ["mini_voc", "mini_9k"])
def test_source_is_one_plain_torch_class(name):
    src = codegen(fixture_net(name))
    tree = ast.parse(src)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {a.name for n in imports if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in imports if isinstance(n, ast.ImportFrom)}
    assert modules <= {"__future__", "torch", "torch.nn.functional"}
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert len(classes) == 1 and len(tree.body) == 1 + len(imports) + 1  # docstring, imports, class
    assert max(len(line) for line in src.splitlines()) <= 110
    assert "self.conv0 = nn.Conv2d(" in src and "F.leaky_relu(x, 0.1)" in src
    if name == "mini_9k":  # the tree tables are buffers filled from the pt file, not literals
        assert 'self.register_buffer("tree12_perm", torch.zeros(9418, dtype=torch.long))' in src
        assert len(src) < 20_000
    else:  # route as torch.cat of named outputs, reorg written out
        assert "torch.cat([x13, x10], 1)" in src and ".permute(0, 3, 5, 1, 2, 4)" in src


def test_cli_codegen(capsys):
    cfg = FIXTURES / "mini_tiny" / "net.cfg"
    assert main(["codegen", str(cfg), "--class-name", "TinyVoc"]) == 0
    out = capsys.readouterr().out
    assert out == codegen(pydarknet.load(cfg, exact=True), "TinyVoc")
    assert main(["codegen", str(cfg), "--class-name", "not valid"]) == 2
