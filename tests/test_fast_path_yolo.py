"""The inference network (`pydarknet.load`'s default) against the exact one on AlexeyAB's layers and
activations: every [yolo] head's output of every yolo fixture case, with the default choice of convolutions
and with Winograd forced on every 3x3 conv; every AlexeyAB activation after direct and Winograd convs
(oneDNN's fused sigmoid and swish, torch's one-pass mish). Tolerance as tests/test_fast_path.py states it;
measured here: at most 3e-6 absolute on the fixtures' head outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pydarknet
from conftest import ALEXEYAB_ZOO_CFG, cfg_for, text_net, yolo_infer_dirs
from pydarknet.cfg import parse_cfg_text
from pydarknet.fast import prepare
from pydarknet.layers import fast_conv, winograd
from pydarknet.layers.activations import ACTIVATION_DEFS
from pydarknet.layers.fast_conv import FastConv
from pydarknet.network import Darknet

ATOL, RTOL = 1e-4, 1e-5
mkldnn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the packed kernels need oneDNN")


def head_outputs(net: pydarknet.Darknet, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return net(x, outputs=[i for i, _ in net.heads])


@mkldnn
@pytest.mark.parametrize("m", [None, 2, 4])
@pytest.mark.parametrize("infer_dir", yolo_infer_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_yolo_heads_match_exact(infer_dir, m, monkeypatch):
    if m is not None:  # the fixtures' few channels never pick Winograd by themselves
        monkeypatch.setattr(winograd, "winograd_tile", lambda c, weights, h, w: m)
    cfg, weights = cfg_for(infer_dir), infer_dir.parent / "net.weights"
    net, exact = pydarknet.load(cfg, weights), pydarknet.load(cfg, weights, exact=True)
    plans = [p for c in net.modules() if isinstance(c, FastConv) for p in c.plans.values()]
    able = any(c.winograd_able for c in net.modules() if isinstance(c, FastConv))
    assert m is None or not able or any(isinstance(p, winograd.WinogradPlan) for p in plans)
    x = torch.from_numpy(np.load(infer_dir / "input.npy"))[None]
    for ours, ref in zip(head_outputs(net, x), head_outputs(exact, x), strict=True):
        torch.testing.assert_close(ours, ref, atol=ATOL, rtol=RTOL)


@mkldnn
@pytest.mark.parametrize("m", [0, 4])
@pytest.mark.parametrize("activation", [*(a for a, d in ACTIVATION_DEFS.items() if d.alexeyab), "logistic"])
def test_alexeyab_activations_after_fast_convs(activation, m, tmp_path, monkeypatch):
    """Each AlexeyAB activation (and logistic) after a fast 3x3 conv, direct (m = 0) or Winograd F(4x4)
    when the activation allows it (normalize_channels* work across the channels: direct only)."""
    monkeypatch.setattr(winograd, "winograd_tile", lambda c, weights, h, w: m)
    text = ("[net]\nwidth=24\nheight=24\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\n"
            f"pad=1\nactivation={activation}\n")
    exact = text_net(text)
    exact.save_weights(tmp_path / "w.weights")
    net = Darknet(parse_cfg_text(text, "act.cfg"), "act.cfg", "fast")
    net.load_weights(tmp_path / "w.weights")
    prepare(net.eval())
    (plan,) = net.layers[0].plans.values()
    assert isinstance(plan, winograd.WinogradPlan) == (m == 4 and not activation.startswith("normalize"))
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 4 - 2
    with torch.no_grad():
        torch.testing.assert_close(net(x), exact(x), atol=ATOL, rtol=RTOL)
    assert set(fast_conv.IN_PLACE) <= {*ACTIVATION_DEFS} and "mish" in fast_conv.IN_PLACE


@mkldnn
def test_alexeyab_zoo_matches_exact(tmp_path):
    """Every AlexeyAB layer kind on the inference network (shortcuts, groups, sam, scale_channels, both
    [yolo] codings)."""
    exact = text_net(ALEXEYAB_ZOO_CFG)
    exact.save_weights(tmp_path / "zoo.weights")
    net = Darknet(parse_cfg_text(ALEXEYAB_ZOO_CFG, "zoo.cfg"), "zoo.cfg", "fast")
    net.load_weights(tmp_path / "zoo.weights")
    prepare(net.eval())
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for ours, ref in zip(head_outputs(net, x), head_outputs(exact, x), strict=True):
        torch.testing.assert_close(ours, ref, atol=ATOL, rtol=RTOL)
