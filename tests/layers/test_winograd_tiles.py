"""Winograd's tile transforms in C (pydarknet.layers.winograd_tiles): built once per machine, equal to the
transforms written as matrix products, and a fast network that still works where no compiler is."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from pydarknet.layers import fast_conv, winograd, winograd_tiles
from pydarknet.layers.conv import ConvLayer
from pydarknet.layers.fast_conv import DirectPlan, FastConv
from pydarknet.layers.registry import Shape

built = pytest.mark.skipif(not winograd_tiles.available(), reason="no C compiler here")


def _tiles(x: torch.Tensor, m: int) -> torch.Tensor:
    """(h, w, c) -> (th, tw, t, t, c): the input map padded by 1 and up to whole m x m output tiles."""
    h, w, _ = x.shape
    th, tw, t = -(-h // m), -(-w // m), m + 2
    xp = torch.nn.functional.pad(x, (0, 0, 1, m * tw - w + 1, 1, m * th - h + 1))
    return xp.unfold(0, t, m).unfold(1, t, m).permute(0, 1, 3, 4, 2)


@built
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("threads", [1, 2])
def test_transforms_equal_the_matrix_products(m: int, threads: int) -> None:
    """Bt d B and At M A (leaky after) on an odd map, in two bands: the products in float64 say what
    they must be."""
    torch.manual_seed(0)
    bt, _, at = winograd._matrices(m)
    h, w, c, k, t = 11, 9, 13, 11, m + 2  # whole vector blocks of channels and a rest
    th, tw = -(-h // m), -(-w // m)
    x = torch.randn(h, w, c)
    expect_v = torch.einsum("ia,jb,rqabc->rqijc", bt, bt, _tiles(x.double(), m)).reshape(th, tw, t * t, c)
    products = torch.randn(th, tw, t * t, k)
    tiles_out = torch.einsum("ia,jb,rqabk->rqijk", at, at, products.double().view(th, tw, t, t, k))
    expect_y = torch.nn.functional.leaky_relu(tiles_out.permute(0, 2, 1, 3, 4).reshape(th * m, tw * m, k), 0.1)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = torch.full((h, w, k), float("nan"))
        for first, rows in ((0, 2), (2, th - 2)):  # the second band's rows count from its own first tile
            v = torch.full((rows * tw, t * t, c), float("nan"))
            winograd_tiles.input_tiles(x, m, first, rows, v)
            torch.testing.assert_close(v.double(), expect_v[first:first + rows].reshape(-1, t * t, c),
                                       atol=1e-5, rtol=1e-5)
            winograd_tiles.output_tiles(products[first:first + rows].reshape(-1, t * t, k).contiguous(), m,
                                        first, rows, 0.1, y)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(y.double(), expect_y[:h, :w], atol=1e-5, rtol=1e-5)  # cropped, all written


@built
@pytest.mark.parametrize("m", [2, 4])
def test_without_vector_extensions_the_same_tiles(m: int, tmp_path, monkeypatch) -> None:
    """Built without -march=native (blocks of 4 channels, SSE2 or NEON), the transforms give the tiles of
    this CPU's build within float rounding."""
    torch.manual_seed(1)
    x, products = torch.randn(10, 9, 13), torch.randn(9 * 9, (m + 2) ** 2, 11)
    tw, t2 = -(-9 // m), (m + 2) ** 2
    rows = -(-10 // m)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        v, y = torch.empty(rows * tw, t2, 13), torch.empty(10, 9, 11)
        winograd_tiles.input_tiles(x, m, 0, rows, v)
        winograd_tiles.output_tiles(products[:rows * tw].contiguous(), m, 0, rows, 0.1, y)
        return v, y

    native = run()
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path))
    monkeypatch.setattr(winograd_tiles, "_OPTIONAL", (("-fopenmp",), ()))
    monkeypatch.setattr(winograd_tiles, "_library", functools.cache(winograd_tiles._library.__wrapped__))
    plain = run()
    assert winograd_tiles._library() is not None and len(list((tmp_path / "kernels").iterdir())) == 1
    for a, b in zip(native, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@built
def test_built_once_per_machine(tmp_path, monkeypatch) -> None:
    """The library is kept under PYDARKNET_HOME/kernels and reused: no compiler runs the second time."""
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path))
    source = b"int input_tiles(void) { return 0; }\n"
    first = winograd_tiles._compile(source, "cc")
    assert first.parent == tmp_path / "kernels" and first.exists()

    def no_compiler(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("compiled again")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert winograd_tiles._compile(source, "cc") == first
    assert [p.name for p in (tmp_path / "kernels").iterdir()] == [first.name]  # no temporary left behind


def test_without_a_compiler_the_fast_conv_runs_direct(tmp_path, monkeypatch) -> None:
    """No compiler: one warning saying why and what it costs; the 3x3 convs Winograd would take run direct
    and equal the exact conv."""
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(winograd_tiles, "_library", winograd_tiles._library.__wrapped__)
    monkeypatch.setattr(winograd, "winograd_tile", lambda *args: 4)
    layer = ConvLayer(64, 8, 3, 1, 1, 1, batch_normalize=True, activation="leaky").eval()
    with pytest.warns(RuntimeWarning, match=r"^Winograd transforms not built: no C compiler \(set CC or install "
                                            r"gcc\); 3x3 convolutions run direct \(about 1.3x slower\)$"):
        conv = FastConv(layer, Shape(64, 24, 24))
        conv.prepare()
    assert isinstance(conv.plans[(24, 24)], DirectPlan) or not fast_conv._packs(torch.zeros(1))
    x = torch.randn(1, 64, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), layer(x), atol=1e-4, rtol=1e-5)


@built
def test_a_forked_child_runs_winograd(tmp_path) -> None:
    """The transforms share torch's OpenMP pool and its thread count: a child forked after the parent used
    the pool runs them once it sets one thread, as DataLoader workers do (with two, torch's own matmul hangs
    there too: GNU OpenMP's pool does not survive a fork)."""
    code = f"""
import os, sys, torch
sys.path.insert(0, {str(ROOT)!r})
from pydarknet.layers import winograd
from pydarknet.layers.conv import ConvLayer
from pydarknet.layers.fast_conv import FastConv
from pydarknet.layers.registry import Shape
winograd.winograd_tile = lambda *args: 4
torch.set_num_threads(2)
layer = ConvLayer(64, 64, 3, 1, 1, 1, batch_normalize=True, activation="leaky").eval()
conv = FastConv(layer, Shape(64, 32, 32)); conv.prepare()
x = torch.randn(1, 64, 32, 32)
with torch.no_grad():
    expect = conv(x)
    pid = os.fork()
    if pid == 0:
        torch.set_num_threads(1)
        os._exit(0 if torch.allclose(conv(x), expect) else 3)
    print(os.waitpid(pid, 0)[1])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYDARKNET_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]


@built
def test_refuses_what_it_would_misread() -> None:
    """The C code takes raw pointers: a map whose channels are strided, another dtype or a strided output is
    an error, not a silent misread."""
    v = torch.empty(4, 36, 8)
    with pytest.raises(ValueError, match="an NHWC map or a channel slice of one"):
        winograd_tiles.input_tiles(torch.randn(8, 8, 16)[:, :, ::2], 4, 0, 2, v)
    with pytest.raises(ValueError, match="an NHWC map or a channel slice of one"):
        winograd_tiles.input_tiles(torch.randn(8, 8, 8, dtype=torch.float64), 4, 0, 2, v)
    with pytest.raises(ValueError, match="contiguous float32 CPU"):
        winograd_tiles.input_tiles(torch.randn(8, 8, 8), 4, 0, 2, torch.empty(4, 36, 16)[:, :, ::2])
    with pytest.raises(ValueError, match=r"F\(2x2\) and F\(4x4\) only"):
        winograd_tiles.input_tiles(torch.randn(8, 8, 8), 6, 0, 2, torch.empty(4, 64, 8))


@built
def test_a_route_group_is_read_in_place(monkeypatch) -> None:
    """A [route] group (a channel slice of an NHWC map) goes into the input transform as it is: the same
    tiles as from its contiguous copy, and a Winograd conv on it equals the exact conv."""
    wide = torch.randn(1, 24, 10, 9).contiguous(memory_format=torch.channels_last)
    group = wide.chunk(2, dim=1)[1]
    image = group[0].permute(1, 2, 0)
    assert winograd_tiles.nhwc(image) and not image.is_contiguous()
    v, expect = torch.empty(9, 36, 12), torch.empty(9, 36, 12)
    winograd_tiles.input_tiles(image, 4, 0, 3, v)
    winograd_tiles.input_tiles(image.contiguous(), 4, 0, 3, expect)
    assert torch.equal(v, expect)
    monkeypatch.setattr(winograd, "winograd_tile", lambda *args: 4)
    layer = ConvLayer(12, 8, 3, 1, 1, 1, batch_normalize=True, activation="leaky").eval()
    conv = FastConv(layer, Shape(12, 10, 9))
    with torch.no_grad():
        expect = layer(group)
        conv.prepare()
        torch.testing.assert_close(conv(group), expect, atol=1e-4, rtol=1e-5)
    assert isinstance(conv.plans[(10, 9)], winograd.WinogradPlan)
