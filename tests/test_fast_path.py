"""The inference fast path (`pydarknet.load(..., fast=True)`) against the exact path on the fixture nets.

Folding BN into the weights, oneDNN's blocked convolutions and Winograd all reorder float32 sums: the
outputs move by rounding only. Measured on these fixtures (region outputs up to ~9 in magnitude): at most
1e-5 absolute with the default choice of convolutions, 1.2e-5 with Winograd F(4x4, 3x3) forced on every
3x3 conv. The tolerance below, 1e-4 absolute plus 1e-5 relative, leaves room for other CPUs' kernels.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import pydarknet
from conftest import FIXTURES, cfg_for, infer_dirs
from pydarknet import fast
from pydarknet.cli.main import main
from pydarknet.errors import DarknetError
from pydarknet.layers.conv import ConvLayer

ATOL, RTOL = 1e-4, 1e-5
mkldnn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the fast path needs oneDNN")


def _outputs(infer_dir, net):  # noqa: ANN001, ANN202
    x = torch.from_numpy(np.load(infer_dir / "input.npy"))[None]
    with torch.no_grad():
        return net(x)


def _exact(infer_dir):  # noqa: ANN001, ANN202
    return pydarknet.load(cfg_for(infer_dir), infer_dir.parent / "net.weights")


@mkldnn
@pytest.mark.parametrize("infer_dir", infer_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_fast_load_matches_exact(infer_dir):
    net = pydarknet.load(cfg_for(infer_dir), infer_dir.parent / "net.weights", fast=True)
    assert not any(isinstance(layer, ConvLayer) for layer in net.layers)
    torch.testing.assert_close(_outputs(infer_dir, net), _outputs(infer_dir, _exact(infer_dir)), atol=ATOL,
                               rtol=RTOL)


@mkldnn
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("infer_dir", infer_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_winograd_everywhere_matches_exact(infer_dir, m, monkeypatch):
    # The fixtures' few channels never pick Winograd by themselves: force it on every 3x3 conv.
    monkeypatch.setattr(fast, "winograd_tile", lambda layer, h, w: m if layer.conv.kernel_size == (3, 3) else 0)
    net = fast.optimize_for_inference(_exact(infer_dir))
    assert any(isinstance(layer, fast.WinogradConv) for layer in net.layers)
    torch.testing.assert_close(_outputs(infer_dir, net), _outputs(infer_dir, _exact(infer_dir)), atol=ATOL,
                               rtol=RTOL)


@mkldnn
def test_winograd_batch_and_odd_sizes_match_conv():
    """Packed for 13x11 (12 tiles of 4x4, 42 of 2x2): the same size, fewer tiles than a block (padded), a
    batch and a larger map (several blocks, the last one partial); activations."""
    torch.manual_seed(0)
    for activation in ("leaky", "linear", "logistic"):
        layer = ConvLayer(128, 64, 3, 1, 1, 1, batch_normalize=True, activation=activation).eval()
        with torch.no_grad():
            layer.bn.running_var.uniform_(0.5, 1.5)
            layer.bn.running_mean.normal_(0, 0.1)
        for m in (2, 4):
            conv = fast.WinogradConv(layer, m, [1, 128, 13, 11]).eval()
            for shape in ((1, 128, 13, 11), (1, 128, 5, 3), (3, 128, 8, 9), (2, 128, 80, 80)):
                x = torch.randn(shape)
                with torch.no_grad():
                    torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)


@mkldnn
def test_winograd_bands_of_tile_rows_match_conv(monkeypatch):
    """Small weights on a large map go through in several bands of tile rows (the last one short)."""
    monkeypatch.setattr(fast, "_BAND_BYTES", 100_000)
    torch.manual_seed(0)
    layer = ConvLayer(16, 8, 3, 1, 1, 1, batch_normalize=True, activation="leaky").eval()
    with torch.no_grad():
        layer.bn.running_var.uniform_(0.5, 1.5)
    short_bands = 0
    for m in (2, 4):
        for shape in ((1, 16, 40, 40), (1, 16, 37, 41)):
            conv = fast.WinogradConv(layer, m, list(shape)).eval()
            tile_rows = -(-shape[2] // m)
            assert 1 < conv.rows < tile_rows
            short_bands += tile_rows % conv.rows > 0
            for n in (1, 2):
                x = torch.randn(n, *shape[1:])
                with torch.no_grad():
                    torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)
    assert short_bands


@mkldnn
@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_voc", "mini_cls"]), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_fast_batch_runs_image_by_image(infer_dir, monkeypatch):
    """A batch through the fast net (one image at a time, Winograd forced on) equals the exact batch."""
    monkeypatch.setattr(fast, "winograd_tile", lambda layer, h, w: 4 if layer.conv.kernel_size == (3, 3) else 0)
    net = fast.optimize_for_inference(_exact(infer_dir))
    assert net.inference_optimized
    x = torch.from_numpy(np.load(infer_dir / "input.npy"))[None]
    batch = torch.cat([x, x.flip(-1), 1 - x])
    with torch.no_grad():
        torch.testing.assert_close(net(batch), _exact(infer_dir)(batch), atol=ATOL, rtol=RTOL)


@mkldnn
def test_fast_net_refuses_training_and_saving(tmp_path):
    infer_dir = infer_dirs(["mini_voc"])[0]
    net = pydarknet.load(cfg_for(infer_dir), infer_dir.parent / "net.weights", fast=True)
    with pytest.raises(DarknetError, match="cannot be saved"):
        net.save_weights(tmp_path / "x.weights")
    with pytest.raises(DarknetError, match="fast path overwrites"):
        net.layer_outputs(torch.zeros(1, 3, net.input_shape.h, net.input_shape.w))
    net.train()
    with pytest.raises(DarknetError, match="cannot be trained"):
        _outputs(infer_dir, net)


def test_skip_init_leaves_loaded_weights_identical():
    infer_dir = infer_dirs(["mini_voc"])[0]
    with fast.skip_init():
        net = pydarknet.network.build_network(cfg_for(infer_dir))
    net.load_weights(infer_dir.parent / "net.weights")
    exact = _exact(infer_dir)
    for a, b in zip(net.state_dict().values(), exact.state_dict().values()):
        assert torch.equal(a, b)


@mkldnn
@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_voc", "mini_tiny", "mini_9k"]),
                         ids=lambda d: f"{d.parent.name}/{d.name}")
def test_cli_fast_prints_the_same_detections(infer_dir, tmp_path, capsys):
    """`detector test --fast` prints Darknet's lines for the fixture images (the timing line aside)."""
    meta = json.loads((infer_dir / "layers.json").read_text())
    stem = meta["image"].split("/")[-1].split(".")[0]
    rgb = np.load(FIXTURES / "images" / f"{stem}_stb_hwc_uint8.npz")["image"]
    image = tmp_path / f"{stem}.png"  # lossless: the pixels Darknet's decoder saw
    cv2.imwrite(str(image), rgb[:, :, ::-1])
    data = "cfg/combine9k.data" if infer_dir.parent.name == "mini_9k" else "cfg/voc.data"
    args = ["detector", "test", data, str(cfg_for(infer_dir)), str(infer_dir.parent / "net.weights"), str(image),
            "-thresh", ".25", "--no-draw", "--fast"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == (infer_dir / "cli_stdout_thresh0.25.txt").read_text().splitlines()[1:]


@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_voc", "mini_cls"]), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_fold_batchnorm_matches_exact(infer_dir):
    """What the fast path does off the CPU (`ConvLayer.folded` is shared with the CPU path)."""
    net = _exact(infer_dir).fold_batchnorm()
    assert all(layer.bn is None for layer in net.layers if isinstance(layer, ConvLayer))
    torch.testing.assert_close(_outputs(infer_dir, net), _outputs(infer_dir, _exact(infer_dir)), atol=ATOL,
                               rtol=RTOL)
