"""The inference network (`pydarknet.load`'s default) against the exact one (`exact=True`).

Folding BN into the weights, oneDNN's blocked convolutions and Winograd all reorder float32 sums: the
outputs move by rounding only. Measured on the fixture nets (region outputs up to ~9 in magnitude): at
most 1e-5 absolute with the default choice of convolutions, 1.2e-5 with Winograd F(4x4, 3x3) forced on
every 3x3 conv; yolov2-tiny-voc with random weights at 224-608: 1.8e-5 (outputs up to ~5). The tolerance
below, 1e-4 absolute plus 1e-5 relative, leaves room for other CPUs' kernels.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import pydarknet
from conftest import FIXTURES, ROOT, cfg_for, infer_dirs
from pydarknet import fast
from pydarknet.cli.main import main
from pydarknet.errors import DarknetError
from pydarknet.image import image_from_array, letterbox_image
from pydarknet.layers import fast_conv, winograd
from pydarknet.layers.conv import ConvLayer
from pydarknet.layers.fast_conv import FastConv
from pydarknet.layers.registry import Shape
from pydarknet.network import build_network

ATOL, RTOL = 1e-4, 1e-5
mkldnn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the packed kernels need oneDNN")
FIXTURE_IDS = {"ids": lambda d: f"{d.parent.name}/{d.name}"}
# (h, w) input sizes other than each fixture cfg's (multiples of the nets' strides; odd maps deeper in).
OTHER_SIZES = {"mini_voc": [(64, 64), (128, 160), (80, 112)], "mini_tiny": [(64, 64), (120, 80), (160, 96)],
               "mini_9k": [(64, 64), (32, 80), (96, 48)], "mini_cls": [(32, 32), (56, 72), (128, 96)]}


def _outputs(infer_dir, net):  # noqa: ANN001, ANN202
    x = torch.from_numpy(np.load(infer_dir / "input.npy"))[None]
    with torch.no_grad():
        return net(x)


def _exact(infer_dir):  # noqa: ANN001, ANN202
    return pydarknet.load(cfg_for(infer_dir), infer_dir.parent / "net.weights", exact=True)


def _fast(infer_dir):  # noqa: ANN001, ANN202
    return pydarknet.load(cfg_for(infer_dir), infer_dir.parent / "net.weights")


def _force_winograd(monkeypatch, m) -> None:  # noqa: ANN001
    """Winograd F(m x m) on every 3x3 conv (a function of the map size: m(h, w))."""
    monkeypatch.setattr(winograd, "winograd_tile", lambda c, weights, h, w: m(h, w) if callable(m) else m)


def _images(size: tuple[int, int]) -> torch.Tensor:
    """The fixture images (stb_image's pixels) letterboxed to (h, w), as a batch."""
    h, w = size
    rgb = [np.load(p)["image"] for p in sorted((FIXTURES / "images").glob("*_stb_hwc_uint8.npz"))]
    return torch.from_numpy(np.stack([letterbox_image(image_from_array(im), w, h) for im in rgb]))


def _plans(net) -> list:  # noqa: ANN001
    return [p for m in net.modules() if isinstance(m, FastConv) for p in m.plans.values()]


@mkldnn
@pytest.mark.parametrize("infer_dir", infer_dirs(), **FIXTURE_IDS)
def test_fast_load_matches_exact(infer_dir):
    net = _fast(infer_dir)
    assert not any(isinstance(layer, ConvLayer) for layer in net.modules())
    torch.testing.assert_close(_outputs(infer_dir, net), _outputs(infer_dir, _exact(infer_dir)), atol=ATOL,
                               rtol=RTOL)


@mkldnn
@pytest.mark.parametrize("name", list(OTHER_SIZES))
def test_fast_matches_exact_at_other_sizes(name):
    """The cfg's network run at three sizes it was not written for: plans made per size, all equal to
    the exact network (the fixture images, a batch of four)."""
    exact = pydarknet.load(FIXTURES / name / "net.cfg", FIXTURES / name / "net.weights", exact=True)
    net = pydarknet.load(FIXTURES / name / "net.cfg", FIXTURES / name / "net.weights")
    for size in OTHER_SIZES[name]:
        x = _images(size)
        with torch.no_grad():
            torch.testing.assert_close(net(x), exact(x), atol=ATOL, rtol=RTOL)
    conv = next(m for m in net.modules() if isinstance(m, FastConv))
    assert list(conv.plans) == OTHER_SIZES[name]  # the cfg's size, least recently used, went first


@mkldnn
def test_full_size_cfg_at_other_sizes():
    """yolov2-tiny-voc with random weights (the same seed for both networks) at three sizes: Winograd
    F(4x4) and F(2x2) and direct convs, on maps the cfg's 416 never gives."""
    cfg = ROOT / "cfg" / "yolov2-tiny-voc.cfg"
    torch.manual_seed(0)
    exact = pydarknet.load(cfg, exact=True)
    torch.manual_seed(0)
    net = pydarknet.load(cfg)
    for size in ((320, 320), (608, 608), (288, 480)):
        x = _images(size)[:1]
        with torch.no_grad():
            torch.testing.assert_close(net(x), exact(x), atol=ATOL, rtol=RTOL)
    assert {p.m for p in _plans(net)} == {0, 2, 4}


@mkldnn
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("infer_dir", infer_dirs(), **FIXTURE_IDS)
def test_winograd_everywhere_matches_exact(infer_dir, m, monkeypatch):
    # The fixtures' few channels never pick Winograd by themselves: force it on every 3x3 conv.
    _force_winograd(monkeypatch, m)
    net = _fast(infer_dir)
    assert any(isinstance(p, winograd.WinogradPlan) for p in _plans(net))
    torch.testing.assert_close(_outputs(infer_dir, net), _outputs(infer_dir, _exact(infer_dir)), atol=ATOL,
                               rtol=RTOL)


def _random_conv(c: int, k: int, activation: str) -> ConvLayer:
    layer = ConvLayer(c, k, 3, 1, 1, 1, batch_normalize=True, activation=activation).eval()
    with torch.no_grad():
        layer.bn.running_var.uniform_(0.5, 1.5)
        layer.bn.running_mean.normal_(0, 0.1)
    return layer


@mkldnn
def test_winograd_batch_and_odd_sizes_match_conv(monkeypatch):
    """Built for 13x11: that size, a smaller map, a batch, a larger map in several bands (plans of their
    own, made from the first one's packed weights); activations fused, in place or the layer's own."""
    monkeypatch.setattr(winograd, "_BAND_BYTES", 400_000)
    torch.manual_seed(0)
    for activation in ("leaky", "linear", "logistic"):
        for m in (2, 4):
            _force_winograd(monkeypatch, m)
            layer = _random_conv(128, 64, activation)
            conv = FastConv(layer, Shape(128, 13, 11))
            conv.prepare()
            for shape in ((1, 128, 13, 11), (1, 128, 5, 3), (3, 128, 8, 9), (2, 128, 80, 80)):
                x = torch.randn(shape)
                with torch.no_grad():
                    torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)
            assert all(isinstance(p, winograd.WinogradPlan) for p in conv.plans.values())
            assert conv.plans[(80, 80)].rows < -(-80 // m)  # in bands


@mkldnn
def test_winograd_bands_of_tile_rows_match_conv(monkeypatch):
    """Small weights on a large map go through in several bands of tile rows (the last one short)."""
    monkeypatch.setattr(winograd, "_BAND_BYTES", 100_000)
    torch.manual_seed(0)
    layer = _random_conv(16, 8, "leaky")
    short_bands = 0
    for m in (2, 4):
        _force_winograd(monkeypatch, m)
        for shape in ((1, 16, 40, 40), (1, 16, 37, 41)):
            conv = FastConv(layer, Shape(*shape[1:]))
            conv.prepare()
            plan = conv.plans[shape[2:]]
            tile_rows = -(-shape[2] // m)
            assert 1 < plan.rows < tile_rows
            short_bands += tile_rows % plan.rows > 0
            for n in (1, 2):
                x = torch.randn(n, *shape[1:])
                with torch.no_grad():
                    torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)
    assert short_bands


@mkldnn
def test_plans_derive_from_packed_copies(monkeypatch):
    """Once packed, the plain weights are gone: a plan of another kind is made from a packed copy (a
    direct one's exactly, a Winograd one's through the inverse transform), and still matches."""
    torch.manual_seed(0)
    tile = {16: 4, 12: 2, 10: 0, 8: 4}
    _force_winograd(monkeypatch, lambda h, w: tile[h])
    for first in (16, 10):  # packed first as Winograd F(4x4), or direct
        layer = _random_conv(32, 16, "leaky")
        conv = FastConv(layer, Shape(32, first, first))
        conv.prepare()
        assert conv.source is None
        for h in (16, 12, 10, 8):
            x = torch.randn(1, 32, h, h)
            with torch.no_grad():
                torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)
            assert conv.plans[(h, h)].m == tile[h]


@mkldnn
def test_plan_cache_is_bounded_and_shares_packed_weights(monkeypatch):
    """At most PLAN_SHAPES sizes are kept, least recently used out first; a plan reuses the packed
    weights of another plan of its kind exactly when oneDNN's layout for it is the same."""
    torch.manual_seed(0)
    layer = _random_conv(64, 64, "leaky")
    sizes = [(13, 13), (26, 13), (20, 13), (26, 26), (19, 19), (14, 14)]
    conv = FastConv(layer, Shape(64, 13, 13))
    conv.prepare()
    for h, w in sizes[1:] + [(26, 13)]:
        conv(torch.randn(1, 64, h, w))
    assert len(conv.plans) == fast_conv.PLAN_SHAPES
    assert list(conv.plans) == [(19, 19), (14, 14), (26, 13)]
    plans = list(conv.plans.values())
    for p in plans:
        for q in plans:
            if p is not q and p.m == q.m:
                assert (p.weight is q.weight) == (fast_conv.layout(p.weight) == fast_conv.layout(q.weight))
    # The mechanism, whatever this CPU's layouts: one layout for every size -> one packed copy per kind.
    monkeypatch.setattr(fast_conv, "layout", lambda packed: b"one layout")
    _force_winograd(monkeypatch, lambda h, w: 2 if h > 20 else 0)
    conv = FastConv(layer, Shape(64, 13, 13))
    conv.prepare()
    for h, w in sizes:
        x = torch.randn(1, 64, h, w)
        with torch.no_grad():
            torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)
    assert len({id(p.weight) for p in conv.plans.values()}) == 2  # a direct and a Winograd F(2x2) copy


@mkldnn
@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_voc", "mini_cls"]), **FIXTURE_IDS)
def test_fast_batch_matches_exact(infer_dir, monkeypatch):
    """A batch through the fast net (its convs run it image by image, Winograd forced on) equals the
    exact batch."""
    _force_winograd(monkeypatch, 4)
    net = _fast(infer_dir)
    x = torch.from_numpy(np.load(infer_dir / "input.npy"))[None]
    batch = torch.cat([x, x.flip(-1), 1 - x])
    with torch.no_grad():
        torch.testing.assert_close(net(batch), _exact(infer_dir)(batch), atol=ATOL, rtol=RTOL)


@mkldnn
def test_fast_layer_outputs_match_exact():
    """Every layer's output, and the inputs the pools read are left as they were."""
    infer_dir = infer_dirs(["mini_voc"])[0]
    x = torch.from_numpy(np.load(infer_dir / "input.npy"))[None]
    with torch.no_grad():
        fast_outs, exact_outs = _fast(infer_dir).layer_outputs(x), _exact(infer_dir).layer_outputs(x)
    for a, b in zip(fast_outs, exact_outs):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)


def test_fast_net_refuses_training_and_saving(tmp_path):
    infer_dir = infer_dirs(["mini_voc"])[0]
    net = _fast(infer_dir)
    with pytest.raises(DarknetError, match=r"cannot be saved or given other weights \(load it with exact=True"):
        net.save_weights(tmp_path / "x.weights")
    assert not (tmp_path / "x.weights").exists()
    for refused in (net.state_dict, lambda: net.load_weights(infer_dir.parent / "net.weights")):
        with pytest.raises(DarknetError, match="cannot be saved or given other weights"):
            refused()
    with pytest.raises(DarknetError, match="cannot be trained: load it with exact=True"):
        net.train()


def test_skip_init_leaves_loaded_weights_identical():
    infer_dir = infer_dirs(["mini_voc"])[0]
    with fast.skip_init():
        net = build_network(cfg_for(infer_dir))
    net.load_weights(infer_dir.parent / "net.weights")
    for a, b in zip(net.state_dict().values(), _exact(infer_dir).state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_voc", "mini_cls"]), **FIXTURE_IDS)
def test_folded_conv_matches_exact(infer_dir):
    """What the fast variant is off the CPU (the BN-folded conv, `ConvLayer.folded`), run on the CPU."""
    net = build_network(cfg_for(infer_dir), "fast")
    net.load_weights(infer_dir.parent / "net.weights")
    convs = [m for m in net.eval().modules() if isinstance(m, FastConv)]
    for conv in convs:
        conv.fold()
    torch.testing.assert_close(_outputs(infer_dir, net), _outputs(infer_dir, _exact(infer_dir)), atol=ATOL,
                               rtol=RTOL)
    assert all(conv.source is None and not conv.plans for conv in convs)


@mkldnn
@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_voc", "mini_tiny", "mini_9k"]), **FIXTURE_IDS)
@pytest.mark.parametrize("flags", [[], ["--exact"]], ids=["default", "exact"])
def test_cli_default_is_fast_and_prints_darknets_lines(infer_dir, flags, tmp_path, capsys, monkeypatch):
    """`detector test` runs the inference network unless --exact, and either prints Darknet's lines for
    the fixture images (the timing line aside)."""
    from pydarknet.cli import detect

    nets = []
    run = detect.run_detection
    monkeypatch.setattr(detect, "run_detection", lambda d, *a: nets.append(d.net) or run(d, *a))
    meta = json.loads((infer_dir / "layers.json").read_text())
    stem = meta["image"].split("/")[-1].split(".")[0]
    rgb = np.load(FIXTURES / "images" / f"{stem}_stb_hwc_uint8.npz")["image"]
    image = tmp_path / f"{stem}.png"  # lossless: the pixels Darknet's decoder saw
    cv2.imwrite(str(image), rgb[:, :, ::-1])
    data = "cfg/combine9k.data" if infer_dir.parent.name == "mini_9k" else "cfg/voc.data"
    args = ["detector", "test", data, str(cfg_for(infer_dir)), str(infer_dir.parent / "net.weights"), str(image),
            "-thresh", ".25", "--no-draw", *flags]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == (infer_dir / "cli_stdout_thresh0.25.txt").read_text().splitlines()[1:]
    assert any(isinstance(m, FastConv) for m in nets[0].modules()) == (not flags)


# Every inference command, up to the network load: the kwargs it passes to pydarknet.load.
INFERENCE_COMMANDS = {
    "detect": ["detect", "CFG", "W", "data/dog.jpg"],
    "detector test": ["detector", "test", "cfg/voc.data", "CFG", "W", "data/dog.jpg"],
    "detector demo": ["detector", "demo", "cfg/voc.data", "CFG", "W", "video.avi"],
    "detector valid": ["detector", "valid", "cfg/voc.data", "CFG", "W"],
    "detector recall": ["detector", "recall", "VALID_DATA", "CFG", "W"],
    "detector map": ["detector", "map", "cfg/voc.data", "CFG", "W"],
    "classifier predict": ["classifier", "predict", "cfg/imagenet1k.data", "CFG", "W", "data/dog.jpg"],
    "classifier valid": ["classifier", "valid", "VALID_DATA", "CFG", "W"],
}


@pytest.mark.parametrize("command", list(INFERENCE_COMMANDS))
def test_inference_commands_default_to_the_fast_network(command, monkeypatch, tmp_path):
    calls = []

    def load(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs)
        raise DarknetError("stop here")

    monkeypatch.setattr(pydarknet, "load", load)
    monkeypatch.setattr("pydarknet.malloc.keep_freed_memory", lambda: True)  # not for this process
    valid_data = tmp_path / "valid.data"
    (tmp_path / "valid.txt").write_text("data/dog.jpg\n")
    valid_data.write_text(f"valid={tmp_path / 'valid.txt'}\nnames=data/voc.names\nlabels=data/voc.names\nclasses=20\n")
    args = [{"CFG": "cfg/yolov2-tiny-voc.cfg", "W": "x.weights", "VALID_DATA": str(valid_data)}.get(a, a)
            for a in INFERENCE_COMMANDS[command]]
    for flags, exact in (([], False), (["--exact"], True)):
        assert main(args + flags) == 2
        assert calls.pop()["exact"] is exact


# A 64 MB malloc, then whether glibc mapped it (its default: over the dynamic mmap threshold, at most
# 32 MB) or served it from the heap (keep_freed_memory's 256 MB threshold). Prints "mapped" or "heap".
MALLOC_PROBE = """
import ctypes
libc = ctypes.CDLL(None)
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
print("mapped" if libc.mallinfo2().hblkhd - before >= 64 << 20 else "heap")
libc.free(ctypes.c_void_p(block))
"""


def _malloc_after(code: str) -> str:
    script = f"{code}\n{MALLOC_PROBE}"
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()[-1]


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
                           reason="glibc >= 2.33 (mallinfo2) only")


@glibc
def test_library_leaves_malloc_settings_alone():
    """`import pydarknet`, `load()` and a forward pass leave glibc's malloc as it was; the explicit
    call changes it (so the probe sees the difference)."""
    cfg = FIXTURES / "mini_voc" / "net.cfg"
    use = (f"import torch, pydarknet\nnet = pydarknet.load({str(cfg)!r}, {str(cfg.with_suffix('.weights'))!r})\n"
           f"with torch.no_grad():\n    net(torch.rand(2, 3, 96, 96))")
    assert _malloc_after(use) == "mapped"
    assert _malloc_after(f"{use}\npydarknet.keep_freed_memory()") == "heap"


@glibc
def test_cli_keeps_freed_memory():
    cfg = FIXTURES / "mini_voc" / "net.cfg"
    run = (f"from pydarknet.cli.main import main\nassert main(['detect', {str(cfg)!r}, "
           f"{str(cfg.with_suffix('.weights'))!r}, 'data/dog.jpg', '--no-draw']) == 0")
    assert _malloc_after(run) == "heap"


@mkldnn
@pytest.mark.parametrize("m", [0, 4])
def test_plans_follow_the_thread_count(monkeypatch, m):
    """oneDNN packs weights for a thread count: after torch.set_num_threads a conv makes a plan for the new
    count (the old one would reorder every weight on every call) and still equals the exact conv."""
    _force_winograd(monkeypatch, m)
    torch.manual_seed(0)
    layer = _random_conv(64, 32, "leaky")
    conv = FastConv(layer, Shape(64, 24, 24))
    x = torch.randn(1, 64, 24, 24)
    previous = torch.get_num_threads()
    try:
        for threads in (2, 1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                torch.testing.assert_close(conv(x), layer(x), atol=ATOL, rtol=RTOL)
            plan = conv.plans[(24, 24)]
            assert (plan.threads, plan.m, len(conv.plans)) == (threads, m, 1)
    finally:
        torch.set_num_threads(previous)
