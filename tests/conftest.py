"""Shared test helpers: where the fixtures live and how to iterate over them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pydarknet
from pydarknet.cfg import parse_cfg_text
from pydarknet.layers.activations import ACTIVATION_DEFS
from pydarknet.network import Darknet

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
NETS = ["mini_voc", "mini_tiny", "mini_9k", "mini_cls"]
# AlexeyAB's Darknet's numbers for the [yolo] family (a copy of shared/fixtures_yolo; see its README)
YOLO_FIXTURES = FIXTURES / "yolo"
YOLO_NETS = ["mini_v3", "mini_v4tiny", "mini_v4", "mini_v7", "mini_attn"]


def infer_dirs(nets: list[str] = NETS) -> list[Path]:
    return sorted(d for net in nets for d in (FIXTURES / net).glob("infer_*"))


def yolo_infer_dirs(nets: list[str] = YOLO_NETS) -> list[Path]:
    return sorted(d for net in nets for d in (YOLO_FIXTURES / net).glob("infer_*"))


def cfg_for(infer_dir: Path) -> Path:
    """The fixture cfg whose input size matches this infer dir."""
    meta = json.loads((infer_dir / "layers.json").read_text())
    for cfg in sorted(infer_dir.parent.glob("net*.cfg")):
        lines = cfg.read_text().splitlines()
        if f"width={meta['net_w']}" in lines and f"height={meta['net_h']}" in lines:
            return cfg
    raise AssertionError(f"no cfg for {infer_dir}")


@pytest.fixture(autouse=True)
def _run_from_darknet_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fixture cfgs name data/9k.tree etc. relative to the working directory, as Darknet does.
    monkeypatch.chdir(ROOT)


def fixture_dir(name: str) -> Path:
    return (YOLO_FIXTURES if name in YOLO_NETS else FIXTURES) / name


def fixture_net(name: str) -> pydarknet.Darknet:
    return pydarknet.load(fixture_dir(name) / "net.cfg", fixture_dir(name) / "net.weights", exact=True)


def fixture_batch(net: pydarknet.Darknet, name: str, size: int) -> torch.Tensor:
    """`size` fixture inputs of the net's input size; mirrored copies where the fixture has fewer."""
    s = net.input_shape
    images = [a for a in (np.load(p) for p in sorted(fixture_dir(name).glob("infer_*/input.npy")))
              if a.shape == (s.c, s.h, s.w)]
    flips = [(), (2,), (1,), (1, 2)]
    picked = [np.flip(images[i % len(images)], flips[i // len(images)]) for i in range(size)]
    return torch.from_numpy(np.ascontiguousarray(np.stack(picked)))


# AlexeyAB's layers and forms: weighted multi-input shortcuts (both normalizations, a source with fewer
# channels), route groups, x/y strides, channel-depth maxpool, downsample, attention, both [yolo] codings.
ALEXEYAB_ZOO_CFG = "\n".join([
    "[net]\nwidth=16\nheight=16\nchannels=3",
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=mish",
    *(f"[convolutional]\nbatch_normalize={i % 2}\nfilters=8\nsize=1\nstride=1\nactivation={a}"
      for i, a in enumerate([a for a, d in ACTIVATION_DEFS.items() if d.alexeyab])),
    "[shortcut]\nfrom=-2,-3\nweights_type=per_channel\nweights_normalization=softmax\nactivation=swish",
    "[shortcut]\nfrom=0\nweights_type=per_feature\nweights_normalization=relu\nactivation=mish",
    "[shortcut]\nfrom=-1\nactivation=linear",
    "[convolutional]\nfilters=12\nsize=1\nactivation=linear",
    "[shortcut]\nfrom=-2\nactivation=relu6",  # 8 channels into 12
    "[route]\nlayers=-1,-3\ngroups=2\ngroup_id=1",
    "[maxpool]\nsize=2\nstride_x=2\nstride_y=1",
    "[maxpool]\nmaxpool_depth=1\nout_channels=3",
    "[upsample]\nstride=-2\nscale=0.5",
    "[upsample]\nstride=2",
    "[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\nstride_x=1\nstride_y=2\npad=1\nactivation=gelu",
    "[dropout]\nprobability=.3",
    "[avgpool]",
    "[convolutional]\nfilters=6\nsize=1\nactivation=logistic",
    "[scale_channels]\nfrom=-4",
    "[convolutional]\nfilters=1\nsize=1\nactivation=logistic",
    "[scale_channels]\nfrom=-2\nscale_wh=1",
    "[sam]\nfrom=-1\nactivation=relu6",
    "[convolutional]\nfilters=14\nsize=1\nactivation=linear",
    "[yolo]\nmask=0,1\nnum=3\nclasses=2\nanchors=1,2,3,4,5,6\nscale_x_y=1.05",
    "[route]\nlayers=-2",
    "[convolutional]\nfilters=7\nsize=1\nactivation=logistic",
    "[yolo]\nmask=2\nnum=3\nclasses=2\nanchors=1,2,3,4,5,6\nnew_coords=1\nscale_x_y=2",
])


def text_net(text: str) -> Darknet:
    """A network from cfg text, random parameters (anchors kept), in eval mode."""
    net = Darknet(parse_cfg_text(text, "zoo.cfg"), "zoo.cfg")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5, generator=g)
            elif t.is_floating_point() and not name.endswith("biases"):
                t.normal_(0, 0.5, generator=g)
    return net.eval()
