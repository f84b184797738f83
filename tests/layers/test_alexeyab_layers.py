"""AlexeyAB's layers and activations beyond what the fixture nets store: each against a numpy statement of
Darknet's C loop, and autograd's gradients of every one of them (the trainer relies on them) by gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pydarknet.cfg import parse_cfg_text
from pydarknet.layers.activations import ACTIVATION_DEFS, ACTIVATIONS
from pydarknet.network import Darknet

HEAD = "[net]\nwidth=8\nheight=6\nchannels=4\n"
rng = np.random.default_rng(7)


def net_of(body: str) -> Darknet:
    return Darknet(parse_cfg_text(HEAD + body, "t.cfg"), "t.cfg")


def x_of(net: Darknet, batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    s = net.input_shape
    return torch.from_numpy(rng.normal(0, 2, (batch, s.c, s.h, s.w))).to(dtype)


# --- activations: Darknet's C formulas, element by element ------------------------------------------------

def _softplus(x: float) -> float:  # activations.h softplus_activate, threshold 20
    return x if x > 20 else math.exp(x) if x < -20 else math.log(math.exp(x) + 1)


C_FORMULAS = {  # activations.h / activations.c / activation_kernels.cu (GPU for relu6)
    "relu6": lambda x: min(max(x, 0), 6),
    "gelu": lambda x: 0.5 * x * (1 + math.tanh(0.797885 * x + 0.035677 * x**3)),
    "revleaky": lambda x: x if x > 0 else 0.1 * x,
    "swish": lambda x: x / (1 + math.exp(-x)),
    "mish": lambda x: x * math.tanh(_softplus(x)),
    "hard_mish": lambda x: x if x > 0 else x * x / 2 + x if x > -2 else 0.0,
    "selu": lambda x: 1.0507 * x if x >= 0 else 1.0507 * 1.6732 * (math.exp(x) - 1),
}


@pytest.mark.parametrize("name", sorted(C_FORMULAS))
def test_elementwise_activation_is_darknets(name):
    x = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([-2.0, 0.0, 6.0, 20.5, -20.5])])
    ref = torch.tensor([C_FORMULAS[name](float(v)) for v in x])
    torch.testing.assert_close(ACTIVATIONS[name](x), ref, atol=2e-6, rtol=2e-6)


def _normalize_channels(x: np.ndarray, kind: str) -> np.ndarray:
    """activate_array_normalize_channels(_softmax) at every (batch, position): over the channels."""
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                v = x[b, :, i, j]
                if kind == "normalize_channels":
                    out[b, :, i, j] = np.where(v > 0, v / (0.0001 + v[v > 0].sum()), 0)
                else:
                    m = v.max() if kind.endswith("maxval") else 0.0
                    out[b, :, i, j] = np.exp(v - m) / (0.0001 + np.exp(v - m).sum())
    return out


@pytest.mark.parametrize("name", ["normalize_channels", "normalize_channels_softmax",
                                  "normalize_channels_softmax_maxval"])
def test_channel_normalizing_activation_is_darknets(name):
    x = rng.normal(0, 2, (2, 5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(ACTIVATIONS[name](torch.from_numpy(x)).numpy(), _normalize_channels(x, name),
                               rtol=1e-5, atol=1e-6)


# Activations with Darknet's own derivative (gelu): tests/layers/test_activation_gradients.py
@pytest.mark.parametrize("name", sorted(n for n, d in ACTIVATION_DEFS.items() if d.gradient is None))
def test_activation_gradients(name):
    if name == "stair":  # piecewise constant slope with jumps: Darknet's gradient is not its derivative
        pytest.skip("stair")
    x = torch.from_numpy(rng.normal(0, 3, (2, 3, 2, 2))).requires_grad_()
    assert torch.autograd.gradcheck(ACTIVATIONS[name], (x,))


# --- layers ---------------------------------------------------------------------------------------------

def test_route_groups_take_one_channel_group_of_each_source():
    net = net_of("[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"
                 "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
                 "[route]\nlayers=-2,-1\ngroups=2\ngroup_id=1\n")
    with torch.no_grad():
        outs = net.layer_outputs(x_of(net))
    # forward_route_layer: part_input_size = outputs/groups elements at offset part*group_id, per source
    expected = torch.cat([outs[0][:, 3:], outs[1][:, 2:]], 1)
    assert net.shapes[2].c == 5 and torch.equal(outs[2], expected)
    assert "1/2 ->" in net.summaries[2]


def test_maxpool_x_y_strides_and_depth():
    net = net_of("[maxpool]\nsize=2\nstride_x=2\nstride_y=1\n[maxpool]\nmaxpool_depth=1\nout_channels=3\n")
    x = x_of(net)
    with torch.no_grad():
        pooled, depth = net.layer_outputs(x)[:2]
    assert tuple(net.shapes[0].__dict__.values()) == (4, 6, 4) == tuple(pooled.shape[1:])
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), value=-math.inf)  # padding size-1 = 1: after only
    for i in range(6):
        for j in range(4):
            assert torch.equal(pooled[:, :, i, j], padded[:, :, i:i + 2, 2 * j:2 * j + 2].amax((2, 3)))
    # forward_maxpool_layer, maxpool_depth: channel g is the max of channels g, g+3, ... (here 4 channels)
    assert torch.equal(depth[:, 0], torch.maximum(pooled[:, 0], pooled[:, 3]))
    assert torch.equal(depth[:, 1:], pooled[:, 1:3])


@pytest.mark.parametrize("stride", [2, 3])
def test_upsample_keeps_the_memory_format(stride: int) -> None:
    """upsample_cpu repeats each value stride x stride times, times scale; an NHWC map (the fast variant's
    layout) stays NHWC, an NCHW one NCHW, with the same values."""
    net = net_of(f"[upsample]\nstride={stride}\nscale=0.5\n")
    x = x_of(net)
    expected = 0.5 * x.repeat_interleave(stride, dim=2).repeat_interleave(stride, dim=3)
    with torch.no_grad():
        nchw = net(x)
        nhwc = net(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(nchw, expected) and torch.equal(nhwc, expected)
    assert nchw.is_contiguous() and nhwc.is_contiguous(memory_format=torch.channels_last)


def test_upsample_negative_stride_sums_blocks():
    net = net_of("[upsample]\nstride=-2\nscale=0.5\n[sam]\nfrom=-1")  # [sam]: an AlexeyAB cfg
    x = x_of(net)
    with torch.no_grad():
        down = net.layer_outputs(x)[0]
    # upsample_cpu backwards: out[k, j, i] += scale * in[k, 2j + dy, 2i + dx]
    expected = 0.5 * x.reshape(2, 4, 3, 2, 4, 2).sum((3, 5))
    assert tuple(net.shapes[0].__dict__.values()) == (4, 3, 4)
    torch.testing.assert_close(down, expected, rtol=0, atol=1e-6)
    assert net.summaries[0].startswith("downsample               2x")


def test_scale_channels_and_sam():
    net = net_of("[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n[avgpool]\n"
                 "[scale_channels]\nfrom=-2\n[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n"
                 "[scale_channels]\nfrom=-2\nscale_wh=1\n[sam]\nfrom=-1\nactivation=relu6")
    x = x_of(net)
    with torch.no_grad():
        outs = net.layer_outputs(x)
    assert torch.equal(outs[2], outs[0] * outs[1])  # (4, 1, 1) factors per channel
    assert torch.equal(outs[4], outs[2] * outs[3])  # (1, H, W) factors per position (scale_wh)
    assert torch.equal(outs[5], torch.clamp(outs[4] * outs[4], 0, 6))
    assert net.summaries[2] == "scale Layer: 0" and net.shapes[4] == net.shapes[0]


SHORTCUT = ("[convolutional]\nfilters=6\nsize=1\nactivation=linear\n"
            "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
            "[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
            "[shortcut]\nfrom=-3,-2\nweights_type={}\nweights_normalization={}\nactivation=linear\n")


def _shortcut_reference(x, sources, w, normalization, fused):  # noqa: ANN001, ANN202
    """shortcut_multilayer_cpu (fuse_conv_batchnorm's relu is max(w, .001)) in float64 numpy."""
    w = w.astype(np.float64)
    if normalization == "relu":
        w = np.maximum(w, 0.001) if fused else np.maximum(w, 0)
        w = w / (0.0001 + w.sum(0))
    elif normalization == "softmax":
        e = np.exp(w - w.max(0))
        w = e / (0.0001 + e.sum(0))
    w = np.broadcast_to(w, (w.shape[0], x.shape[1]))
    out = x * w[0][None, :, None, None]
    for i, s in enumerate(sources):
        k = min(s.shape[1], x.shape[1])
        out[:, :k] += s[:, :k] * w[i + 1][None, :k, None, None]
    return out


@pytest.mark.parametrize("weights_type", ["none", "per_feature", "per_channel"])
@pytest.mark.parametrize("normalization", ["none", "relu", "softmax"])
@pytest.mark.parametrize("training", [False, True])
def test_weighted_multi_shortcut(weights_type, normalization, training):
    net = net_of(SHORTCUT.format(weights_type, normalization))
    layer = net.layers[3]
    if layer.weights is not None:
        assert layer.weights.shape == (3, 4 if weights_type == "per_channel" else 1)
        with torch.no_grad():
            layer.weights.copy_(torch.from_numpy(rng.normal(0, 1, tuple(layer.weights.shape))))
    net.train(training)
    x = x_of(net)
    with torch.no_grad():
        outs = net.layer_outputs(x)
    w = np.ones((3, 1)) if layer.weights is None else layer.weights.detach().numpy()
    ref = _shortcut_reference(outs[2].numpy().astype(np.float64), [outs[0].numpy(), outs[1].numpy()], w,
                              normalization if layer.weights is not None else "none", fused=not training)
    np.testing.assert_allclose(outs[3].numpy(), ref, rtol=1e-5, atol=1e-6)
    wt = {"none": 0, "per_feature": 1, "per_channel": 2}[weights_type]
    assert net.summaries[3].startswith(f"Shortcut Layer: 0, 1,  wt = {wt}, ")
    assert " (   8 x   6 x   4) + (   8 x   6 x   6) " in net.summaries[3].splitlines()


def test_shortcut_weights_in_the_weights_file(tmp_path):
    net = net_of(SHORTCUT.format("per_channel", "softmax"))
    with torch.no_grad():
        net.layers[3].weights.copy_(torch.arange(12.0).view(3, 4))
    net.save_weights(tmp_path / "w.weights")
    floats = np.frombuffer((tmp_path / "w.weights").read_bytes()[20:], "<f4")
    conv_floats = sum(t.numel() for i in range(3) for t in net.layers[i].darknet_params())
    assert len(floats) == conv_floats + 12  # save_shortcut_weights after the convs, row by row
    assert np.array_equal(floats[conv_floats:], np.arange(12.0))
    again = net_of(SHORTCUT.format("per_channel", "softmax"))
    again.load_weights(tmp_path / "w.weights")
    assert torch.equal(again.layers[3].weights, net.layers[3].weights)


def _yolo_net(extra: str = "") -> Darknet:
    return net_of("[convolutional]\nfilters=14\nsize=1\nactivation=linear\n"
                  f"[yolo]\nmask=1,2\nnum=3\nclasses=2\nanchors=1,2,3,4,5,6\n{extra}")


@pytest.mark.parametrize("new_coords", [0, 1])
def test_yolo_activation(new_coords):
    net = _yolo_net(f"scale_x_y=1.05\nnew_coords={new_coords}")
    x = x_of(net)
    with torch.no_grad():
        raw, out = net.layer_outputs(x)
    v, o = raw.reshape(2, 2, 7, 6, 8).double(), out.reshape(2, 2, 7, 6, 8).double()
    act = v if new_coords else torch.sigmoid(v)
    s = np.float32(1.05)
    offset = float(np.float32(-0.5 * float(s - np.float32(1))))
    torch.testing.assert_close(o[:, :, :2], act[:, :, :2] * float(s) + offset, rtol=0, atol=1e-6)
    torch.testing.assert_close(o[:, :, 2:4], v[:, :, 2:4], rtol=0, atol=0)
    torch.testing.assert_close(o[:, :, 4:], act[:, :, 4:], rtol=0, atol=1e-6)
    layer = net.layers[1]
    assert layer.biases.tolist() == [1, 2, 3, 4, 5, 6] and layer.mask.tolist() == [1, 2]


def _gradcheck_layers(net: Darknet, x: torch.Tensor) -> None:
    """Every layer's output against its inputs (and parameters) by finite differences, in float64."""
    net = net.double()
    x = x.double().requires_grad_()
    params = [p for p in net.parameters() if p.requires_grad]

    def run(inp, *ps):  # noqa: ANN001, ANN202
        return tuple(net.layer_outputs(inp))

    assert torch.autograd.gradcheck(run, (x, *params), atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("cfg", [
    SHORTCUT.format("per_channel", "softmax"),
    SHORTCUT.format("per_feature", "relu"),
    SHORTCUT.format("none", "none") + "[shortcut]\nfrom=-1,-4\nactivation=mish\n",
    "[convolutional]\nfilters=6\nsize=1\nactivation=swish\n[route]\nlayers=-1,-1\ngroups=3\ngroup_id=2\n"
    "[maxpool]\nsize=2\nstride_x=2\nstride_y=1\n[maxpool]\nmaxpool_depth=1\nout_channels=3\n"
    "[upsample]\nstride=-2\nscale=0.5\n[upsample]\nstride=2\n",
    # (gelu trains with Darknet's own derivative: test_activation_gradients.py)
    "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=selu\n[avgpool]\n[scale_channels]\nfrom=-2\n"
    "[convolutional]\nfilters=1\nsize=1\nactivation=hard_mish\n[scale_channels]\nfrom=-2\nscale_wh=1\n"
    "[sam]\nfrom=-1\nactivation=relu6\n[convolutional]\nfilters=7\nsize=1\nactivation=normalize_channels\n"
    "[yolo]\nmask=0\nnum=1\nclasses=2\nscale_x_y=1.1",
], ids=["shortcut_softmax", "shortcut_relu", "multi_shortcut", "route_pool_upsample", "attention_yolo"])
def test_layer_gradients(cfg):
    net = net_of(cfg).train()
    with torch.no_grad():  # random biases too: zero ones put relu-like kinks exactly at 0
        for p in net.parameters():
            p.copy_(torch.from_numpy(rng.normal(0, 0.5, tuple(p.shape))))
    _gradcheck_layers(net, x_of(net, 1).abs() + 0.1)
