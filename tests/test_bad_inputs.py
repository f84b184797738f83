"""The "nothing crashes" catalogue: a bad input given to the CLI ends with exit status 2 and ONE line
on stderr naming the file (with `file:N:` or `byte N` where that is meaningful), never a traceback;
awkward but valid inputs work.

Every case is its own process running `python -m pydarknet ARGV` from the repository root. A fresh
interpreter spends ~3 s importing torch, too slow for ~50 cases, so the cases are forked from one
interpreter that imported pydarknet once (ZYGOTE below): the child runs the package's __main__ through
runpy as `-m` does and ends as the interpreter would (exit status, traceback of an uncaught exception,
atexit, flushed output), skipping only the module teardown. The 12000x12000 image case runs as a fresh
`python -m pydarknet`.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FIXTURES, ROOT, YOLO_FIXTURES

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only (fork, /dev/null)")

VOC_CFG = FIXTURES / "mini_voc" / "net.cfg"
TINY_CFG, TINY_WEIGHTS = FIXTURES / "mini_tiny" / "net.cfg", FIXTURES / "mini_tiny" / "net.weights"
CLS_CFG, CLS_WEIGHTS = FIXTURES / "mini_cls" / "net.cfg", FIXTURES / "mini_cls" / "net.weights"
V3_CFG, V3_WEIGHTS = YOLO_FIXTURES / "mini_v3" / "net.cfg", YOLO_FIXTURES / "mini_v3" / "net.weights"
V4TINY_CFG = YOLO_FIXTURES / "mini_v4tiny" / "net.cfg"
V7_CFG, ATTN_CFG = YOLO_FIXTURES / "mini_v7" / "net.cfg", YOLO_FIXTURES / "mini_attn" / "net.cfg"
TIMEOUT_S = 60  # per case; a hung case is killed and fails
MAX_RSS_KB = 2_500_000
FRESH = {"huge_image"}  # cases run as a fresh `python -m pydarknet` (peak RSS of a real process)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_kb: int


# name -> builder(case dir) returning (argv, regex the one stderr line must match)
BAD: dict[str, Callable[[Path], tuple[list[str], str]]] = {}
# name -> builder(case dir) returning argv; the command must succeed
GOOD: dict[str, Callable[[Path], list[str]]] = {}


def bad(fn: Callable[[Path], tuple[list[str], str]]) -> Callable[[Path], tuple[list[str], str]]:
    BAD[fn.__name__] = fn
    return fn


def good(fn: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    GOOD[fn.__name__] = fn
    return fn


# --- helpers -----------------------------------------------------------------------------------------

def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def small_png(d: Path) -> Path:
    return png(d / "in.png", np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))


def at(path: Path | str, text: str, needle: str) -> str:
    """Regex for `path:N: ` where N is the first line of `text` containing `needle`."""
    number = next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)
    return re.escape(f"{path}:{number}: ")


def cfg_variant(d: Path, *edits: tuple[str, str], base: Path = VOC_CFG, extra: str = "") -> tuple[Path, str]:
    """The fixture cfg with each `old` replaced (first occurrence) by `new`, plus `extra` at the end."""
    text = base.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    text += extra
    return write(d / "net.cfg", text), text


def summary_of(d: Path, *edits: tuple[str, str], needle: str, extra: str = "", then: str = "") -> tuple[list[str], str]:
    cfg, text = cfg_variant(d, *edits, extra=extra)
    return ["summary", str(cfg)], at(cfg, text, needle) + then


def detect_with(weights: Path | str, image: Path | str | None = None, cfg: Path = TINY_CFG) -> list[str]:
    return ["detect", str(cfg), str(weights), str(image or small_png(Path(weights).parent)), "--no-draw"]


def weights_variant(d: Path, data: bytes) -> Path:
    return write(d / "net.weights", data)


def train_set(d: Path, labels: str | None = "0 0.5 0.5 0.2 0.2\n", image: bool = True,
              data: str | None = None) -> Path:
    """A one-image Darknet data set under d (images/a.png, labels/a.txt, train.txt) and its .data file."""
    img = d / "images" / "a.png"
    if image:
        png(img, np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    if labels is not None:
        write(d / "labels" / "a.txt", labels)
    write(d / "train.txt", f"{img}\n")
    if data is None:
        data = f"classes=20\ntrain={d / 'train.txt'}\nbackup={d / 'backup'}\n"
    return write(d / "t.data", data)


def train(data: Path, *extra: str) -> list[str]:
    return ["detector", "train", str(data), str(TINY_CFG), "--max-batches", "1", "--workers", "0", *extra]


# --- cfg problems (`summary` builds the network without weights) --------------------------------------

@bad
def cfg_empty(d: Path) -> tuple[list[str], str]:
    cfg = write(d / "empty.cfg", "")
    return ["summary", str(cfg)], re.escape(f"{cfg}:1: ")


@bad
def cfg_dev_null(d: Path) -> tuple[list[str], str]:
    return ["summary", "/dev/null"], "/dev/null:1: "


@bad
def cfg_without_net(d: Path) -> tuple[list[str], str]:
    text = "# no [net]\n[convolutional]\nfilters=8\n"
    cfg = write(d / "net.cfg", text)
    return ["summary", str(cfg)], at(cfg, text, "[convolutional]") + r".*\[net\]"


@bad
def cfg_unknown_section(d: Path) -> tuple[list[str], str]:
    return summary_of(d, extra="\n[bogus]\nsize=1\n", needle="[bogus]", then=r"\[bogus\] unknown section")


@bad
def cfg_unsupported_lstm(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("[region]", "[lstm]\noutput=16\n\n[region]"), needle="[lstm]",
                      then=r"\[lstm\] .*not support")


@bad
def cfg_unknown_activation(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("activation=leaky", "activation=leeky"), needle="leeky", then=".*'leeky'")


@bad
def cfg_non_numeric(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("filters=16", "filters=sixteen"), needle="sixteen", then=".*not an integer")


@bad
def cfg_negative_filters(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("filters=16", "filters=-16"), needle="filters=-16", then=".*positive")


@bad
def cfg_zero_filters(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("filters=16", "filters=0"), needle="filters=0", then=".*positive")


@bad
def cfg_zero_size(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("size=3", "size=0"), needle="size=0", then=".*positive")


@bad
def cfg_line_without_equals(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("stride=1", "stride 1"), needle="stride 1", then="expected key=value")


@bad
def cfg_route_to_missing_layer(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("layers=-3", "layers=-30"), needle="layers=-30", then=r"\[route\] layers=-30")


@bad
def cfg_route_to_later_layer(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("layers=-1,10", "layers=-1,15"), needle="layers=-1,15", then=r"\[route\] layers=15")


@bad
def cfg_route_spatial_mismatch(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("layers=-1,10", "layers=-1,4"), needle="layers=-1,4", then=".*different spatial")


@bad
def cfg_reorg_not_divisible(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("[reorg]\nstride=2", "[reorg]\nstride=5"), needle="stride=5", then=".*divisible")


@bad
def cfg_region_anchor_count(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("num=5", "num=4"), needle="anchors", then=r"\[region\] anchors= has 10 numbers")


@bad
def cfg_classes_not_matching_filters(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("classes=20", "classes=19"), needle="[region]", then=r"\[region\] .*filters")


@bad
def cfg_missing_tree_file(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("classes=20", "classes=20\ntree=no_such.tree"), needle="tree=",
                      then="tree=no_such.tree: .*no_such.tree")


@bad
def cfg_missing_map_file(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("classes=20", "classes=20\nmap=no_such.map"), needle="map=",
                      then="map=no_such.map: .*no_such.map")


@bad
def cfg_missing(d: Path) -> tuple[list[str], str]:
    return ["summary", str(d / "nope.cfg")], re.escape(f"{d / 'nope.cfg'}: cannot read cfg")


@bad
def cfg_directory(d: Path) -> tuple[list[str], str]:
    return ["summary", str(d)], re.escape(f"{d}: is a directory")


@bad
def cfg_binary(d: Path) -> tuple[list[str], str]:
    cfg = write(d / "net.cfg", TINY_WEIGHTS.read_bytes())
    return ["summary", str(cfg)], re.escape(f"{cfg}: ")


@bad
def cfg_malformed_header(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("[maxpool]", "[maxpool"), needle="[maxpool", then="malformed section header")


@bad
def cfg_net_only(d: Path) -> tuple[list[str], str]:
    cfg = write(d / "net.cfg", "[net]\nwidth=32\nheight=32\nchannels=3\n")
    return ["summary", str(cfg)], re.escape(f"{cfg}: ") + ".*no layers"


@bad
def cfg_zero_width(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("width=96", "width=0"), needle="width=0", then=r"\[net\] width=0")


@bad
def cfg_batch_below_subdivisions(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("subdivisions=1", "subdivisions=4"), needle="batch=", then=r"\[net\] batch=2")


@bad
def cfg_route_without_layers(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("layers=-3", "layers="), needle="[route]", then=r"\[route\] route needs layers=")


@bad
def cfg_nan_value(d: Path) -> tuple[list[str], str]:
    return summary_of(d, ("momentum=0.9", "momentum=nan"), needle="momentum", then=r"\[net\] momentum='nan'")


# --- [yolo]-family cfg problems (AlexeyAB's rules) --------------------------------------------------

def yolo_summary_of(d: Path, base: Path, edit: tuple[str, str], needle: str, then: str) -> tuple[list[str], str]:
    cfg, text = cfg_variant(d, edit, base=base)
    return ["summary", str(cfg)], at(cfg, text, needle) + then


@bad
def yolo_mask_beyond_num(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V3_CFG, ("mask=3,4,5", "mask=3,4,6"), "mask=3,4,6", r"\[yolo\] mask index 6 .*num=6")


@bad
def yolo_anchor_count(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V3_CFG, ("anchors=10,14, ", "anchors=10, "), "anchors=10, ",
                           r"\[yolo\] anchors= has 11 numbers, num=6 needs 12")


@bad
def yolo_filters_not_matching_classes(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V3_CFG, ("classes=80", "classes=79"), "[yolo]",
                           r"\[yolo\] input has 255 channels but len\(mask\)\*\(classes\+5\) = 3\*\(79\+5\)")


@bad
def yolo_new_coords_filters_not_matching_mask(d: Path) -> tuple[list[str], str]:
    # new_coords=1 changes the activation, not AlexeyAB's channel rule
    return yolo_summary_of(d, V7_CFG, ("mask=0,1,2", "mask=0,1"), "[yolo]", r"\[yolo\] input has 255 channels")


@bad
def yolo_unknown_nms_kind(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V4TINY_CFG, ("nms_kind=greedynms", "nms_kind=greedy"), "nms_kind=greedy",
                           r"\[yolo\] unknown nms_kind 'greedy'")


@bad
def yolo_route_groups_not_dividing(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V4TINY_CFG, ("groups=2", "groups=3"), "groups=3",
                           r"\[route\] groups=3 does not divide the 32 channels of layer 2")


@bad
def yolo_route_group_id_out_of_range(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V4TINY_CFG, ("group_id=1", "group_id=2"), "group_id=2", r"\[route\] group_id=2")


@bad
def yolo_shortcut_of_other_size(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V3_CFG, ("from=-3", "from=-4"), "from=-4",
                           r"\[shortcut\] from: layer 0 is 96x96, the input 48x48")


@bad
def yolo_unknown_activation(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V4TINY_CFG, ("activation=mish", "activation=mush"), "mush",
                           r"\[convolutional\] unknown activation 'mush' .*mish")


@bad
def yolo_activation_darknet_does_not_compute_there(d: Path) -> tuple[list[str], str]:
    cfg, text = cfg_variant(d, ("[sam]\nfrom=-2", "[sam]\nfrom=-2\nactivation=swish"), base=ATTN_CFG)
    line = text.splitlines().index("[sam]") + 3
    return (["summary", str(cfg)],
            re.escape(f"{cfg}:{line}: ") + r"\[sam\] activation=swish is computed by AlexeyAB's Darknet only in")


@bad
def yolo_unknown_shortcut_weights_type(d: Path) -> tuple[list[str], str]:
    return yolo_summary_of(d, V3_CFG, ("from=-3", "from=-3\nweights_type=per_pixel"), "per_pixel",
                           r"\[shortcut\] unknown weights_type 'per_pixel'")


@bad
def yolo_weights_without_shortcut_weights(d: Path) -> tuple[list[str], str]:
    # a cfg whose [shortcut] has weights, a file written without them: 2x16 floats missing at the end
    cfg, _ = cfg_variant(d, ("from=-3", "from=-3\nweights_type=per_channel"), base=V3_CFG)
    size = V3_WEIGHTS.stat().st_size
    return (["convert", str(V3_WEIGHTS), str(d / "x.pt"), "--cfg", str(cfg)],
            re.escape(f"{V3_WEIGHTS}: byte {size}: ") + r"expected \d+ floats .*too short")


@bad
def yolo_weights_too_long(d: Path) -> tuple[list[str], str]:
    valid = V3_WEIGHTS.read_bytes()
    w = weights_variant(d, valid + b"\0" * 8)
    return ["convert", str(w), str(d / "x.pt"), "--cfg", str(V3_CFG)], re.escape(f"{w}: byte {len(valid)}: ")


# --- weights problems -------------------------------------------------------------------------------

def _valid_weights() -> bytes:
    return TINY_WEIGHTS.read_bytes()


@bad
def weights_too_short(d: Path) -> tuple[list[str], str]:
    data = _valid_weights()[:-400]
    w = weights_variant(d, data)
    return detect_with(w), re.escape(f"{w}: byte {len(data)}: ") + ".*too short"


@bad
def weights_too_long(d: Path) -> tuple[list[str], str]:
    valid = _valid_weights()
    w = weights_variant(d, valid + b"\0" * 8)
    return detect_with(w), re.escape(f"{w}: byte {len(valid)}: ") + ".*too long"


@bad
def weights_partial_float(d: Path) -> tuple[list[str], str]:
    valid = _valid_weights()
    w = weights_variant(d, valid + b"\0\0")
    return detect_with(w), re.escape(f"{w}: byte {len(valid) + 2}: ")


@bad
def weights_negative_version(d: Path) -> tuple[list[str], str]:
    w = weights_variant(d, struct.pack("<iii", -1, 2, 0) + _valid_weights()[12:])
    return detect_with(w), re.escape(f"{w}: byte 0: ") + ".*version"


@bad
def weights_seen_overflow(d: Path) -> tuple[list[str], str]:
    w = weights_variant(d, _valid_weights()[:12] + b"\xff" * 8 + _valid_weights()[20:])
    return detect_with(w), re.escape(f"{w}: byte 12: ") + ".*seen"


@bad
def weights_three_bytes(d: Path) -> tuple[list[str], str]:
    w = weights_variant(d, b"\0\2\0")
    return detect_with(w), re.escape(f"{w}: byte 3: ")


@bad
def weights_directory(d: Path) -> tuple[list[str], str]:
    (d / "w").mkdir()
    return detect_with(d / "w", small_png(d)), re.escape(f"{d / 'w'}: is a directory")


@bad
def weights_dev_null(d: Path) -> tuple[list[str], str]:
    return detect_with("/dev/null", small_png(d)), re.escape("/dev/null: byte 0: ")


@bad
def weights_missing(d: Path) -> tuple[list[str], str]:
    return detect_with(d / "nope.weights", small_png(d)), re.escape(f"{d / 'nope.weights'}: cannot read weights")


# --- image problems ---------------------------------------------------------------------------------

@bad
def image_random_bytes(d: Path) -> tuple[list[str], str]:
    img = write(d / "noise.jpg", np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return detect_with(TINY_WEIGHTS, img), re.escape(f"{img}: cannot read image")


@bad
def image_truncated_jpeg(d: Path) -> tuple[list[str], str]:
    data = (ROOT / "data" / "dog.jpg").read_bytes()
    img = write(d / "cut.jpg", data[: len(data) // 3])
    return detect_with(TINY_WEIGHTS, img), re.escape(f"{img}: ") + ".*truncated"


@bad
def image_zero_bytes(d: Path) -> tuple[list[str], str]:
    img = write(d / "zero.png", b"")
    return detect_with(TINY_WEIGHTS, img), re.escape(f"{img}: cannot read image: empty")


@bad
def image_directory(d: Path) -> tuple[list[str], str]:
    (d / "pics").mkdir()
    return detect_with(TINY_WEIGHTS, d / "pics"), re.escape(f"{d / 'pics'}: no images")


@bad
def image_missing(d: Path) -> tuple[list[str], str]:
    return detect_with(TINY_WEIGHTS, d / "nope.jpg"), re.escape(f"{d / 'nope.jpg'}: cannot read image")


@bad
def classifier_image_directory(d: Path) -> tuple[list[str], str]:
    argv = ["classifier", "predict", "cfg/imagenet1k.data", str(CLS_CFG), str(CLS_WEIGHTS), str(d)]
    return argv, re.escape(f"{d}: cannot read image")


# --- .data and names problems (`detector test`) ----------------------------------------------------

def detector_test(data: Path, image: Path) -> list[str]:
    return ["detector", "test", str(data), str(TINY_CFG), str(TINY_WEIGHTS), str(image), "--no-draw"]


@bad
def data_missing_names_file(d: Path) -> tuple[list[str], str]:
    text = "classes=20\nnames=no_such.names\n"
    data = write(d / "v.data", text)
    return detector_test(data, small_png(d)), at(data, text, "names=") + "names=no_such.names: "


@bad
def data_names_shorter_than_classes(d: Path) -> tuple[list[str], str]:
    names = write(d / "three.names", "a\nb\nc\n")
    data = write(d / "v.data", f"classes=20\nnames={names}\n")
    return detector_test(data, small_png(d)), re.escape(f"{names}:4: ") + ".*3 names.*20 classes"


@bad
def data_line_without_equals(d: Path) -> tuple[list[str], str]:
    text = "classes=20\nnames data/voc.names\n"
    data = write(d / "v.data", text)
    return detector_test(data, small_png(d)), at(data, text, "names data")


@bad
def data_missing(d: Path) -> tuple[list[str], str]:
    return detector_test(d / "nope.data", small_png(d)), re.escape(f"{d / 'nope.data'}: cannot read")


# --- training data problems (`detector train`) -----------------------------------------------------

@bad
def train_data_without_train(d: Path) -> tuple[list[str], str]:
    data = train_set(d, data="classes=20\nnames=data/voc.names\n")
    return train(data), re.escape(f"{data}: ") + ".*train="


@bad
def train_missing_image_stop(d: Path) -> tuple[list[str], str]:
    data = train_set(d, image=False)
    return train(data, "--label-policy", "stop"), re.escape(f"{d / 'images' / 'a.png'}: cannot read image")


@bad
def train_label_outside_unit_stop(d: Path) -> tuple[list[str], str]:
    data = train_set(d, labels="0 0.5 0.5 0.2 0.2\n3 1.5 0.5 0.2 0.2\n")
    return train(data, "--label-policy", "stop"), re.escape(f"{d / 'labels' / 'a.txt'}:2: cx=1.5 is outside")


@bad
def train_label_field_count_stop(d: Path) -> tuple[list[str], str]:
    data = train_set(d, labels="0 0.5 0.5 0.2\n")
    return train(data, "--label-policy", "stop"), re.escape(f"{d / 'labels' / 'a.txt'}:1: expected 5 fields")


@bad
def train_label_stop_in_worker(d: Path) -> tuple[list[str], str]:
    data = train_set(d, labels="0 0.5 0.5 0.2 -0.2\n")
    argv = train(data, "--label-policy", "stop")
    argv[argv.index("--workers") + 1] = "2"
    return argv, re.escape(f"{d / 'labels' / 'a.txt'}:1: h=-0.2 is outside")


@bad
def train_list_missing(d: Path) -> tuple[list[str], str]:
    data = train_set(d, data=f"classes=20\ntrain={d / 'nope.txt'}\n")
    return train(data), re.escape(f"{d / 'nope.txt'}: cannot read")


@bad
def train_list_empty(d: Path) -> tuple[list[str], str]:
    data = train_set(d)
    write(d / "train.txt", "\n\n")
    return train(data), re.escape(f"{d / 'train.txt'}: no images listed")


@bad
def train_backup_not_a_directory(d: Path) -> tuple[list[str], str]:
    blocker = write(d / "blocker", "a file where a directory should be")
    data = train_set(d, data=f"classes=20\ntrain={d / 'train.txt'}\nbackup={blocker / 'backup'}\n")
    return train(data), re.escape(f"pydarknet: {blocker}")


# --- outputs that cannot be written -----------------------------------------------------------------

@bad
def partial_output_not_writable(d: Path) -> tuple[list[str], str]:
    blocker = write(d / "blocker", "")
    return ["partial", str(TINY_CFG), str(TINY_WEIGHTS), str(blocker / "x.weights"), "3"], \
        re.escape(f"pydarknet: {blocker}")


@bad
def synth_output_not_writable(d: Path) -> tuple[list[str], str]:
    blocker = write(d / "blocker", "")
    return ["synth", str(blocker / "set"), "--train", "1", "--valid", "1"], re.escape(f"pydarknet: {blocker}")


# --- options ----------------------------------------------------------------------------------------

@bad
def unknown_device(d: Path) -> tuple[list[str], str]:
    return [*detect_with(TINY_WEIGHTS, small_png(d)), "--device", "tpu"], "--device 'tpu'"


@bad
def malformed_device(d: Path) -> tuple[list[str], str]:
    return [*train(train_set(d)), "--device", "cuda:x"], "--device 'cuda:x'"


# --- inputs that must work --------------------------------------------------------------------------

@good
def odd_images(d: Path) -> list[str]:
    """1x1, grey, RGBA and 16-bit PNGs, all in one run (--json checks each image's size)."""
    rng = np.random.default_rng(3)
    paths = [png(d / "one.png", np.full((1, 1, 3), 200, np.uint8)),
             png(d / "grey.png", rng.integers(0, 256, (30, 20), dtype=np.uint8)),
             png(d / "rgba.png", rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)),
             png(d / "deep.png", rng.integers(0, 65536, (25, 35, 3), dtype=np.uint16))]
    return ["detect", str(TINY_CFG), str(TINY_WEIGHTS), *map(str, paths), "--no-draw", "--json"]


@good
def huge_image(d: Path) -> list[str]:
    big = png(d / "big.png", np.full((12000, 12000, 3), (30, 90, 200), np.uint8))
    return ["detect", str(TINY_CFG), str(TINY_WEIGHTS), str(big), "--no-draw"]


@good
def labels_outside_unit_skipped(d: Path) -> list[str]:
    data = train_set(d, labels="0 0.5 0.5 0.2 0.2\n3 1.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    return train(data)


@good
def unused_option(d: Path) -> list[str]:
    cfg, _ = cfg_variant(d, ("filters=16", "filters=16\nfoo=1"))
    return ["summary", str(cfg)]


# --- running ---------------------------------------------------------------------------------------

ZYGOTE = r"""
import atexit, json, os, runpy, sys, time
import pydarknet.cli.main, pydarknet.cli.classify, pydarknet.cli.detect, pydarknet.cli.tools, pydarknet.cli.train

jobs, limit, parallel = json.load(sys.stdin), float(sys.argv[1]), int(sys.argv[2])
results, running, pending = [None] * len(jobs), {}, list(range(len(jobs)))
while pending or running:
    if pending and len(running) < parallel:
        i = pending.pop(0)
        pid = os.fork()
        if pid == 0:
            argv, d = jobs[i]
            files = ((os.devnull, os.O_RDONLY), (d + "/stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                     (d + "/stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
            for fd, (name, flags) in enumerate(files):
                os.dup2(os.open(name, flags, 0o644), fd)
            sys.argv = ["pydarknet", *argv]
            code = 0
            try:
                runpy.run_module("pydarknet", run_name="__main__", alter_sys=True)
            except SystemExit as exc:  # as the interpreter handles it
                code = exc.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
            except BaseException:
                sys.excepthook(*sys.exc_info())
                code = 1
            # Finish like the interpreter minus module teardown (~1 s with torch loaded, prints nothing).
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
        running[pid] = (i, time.monotonic())
        continue
    pid, status, usage = os.wait4(-1, os.WNOHANG)
    if pid:
        results[running.pop(pid)[0]] = [os.waitstatus_to_exitcode(status), usage.ru_maxrss]
        continue
    for pid, (i, start) in running.items():
        if time.monotonic() - start > limit:
            os.kill(pid, 9)
    time.sleep(0.005)
json.dump(results, sys.stdout)
"""


def _read(d: Path, code: int, rss_kb: int) -> Run:
    return Run(code, (d / "stdout").read_text(errors="replace"), (d / "stderr").read_text(errors="replace"),
               rss_kb)


def run_forked(jobs: list[tuple[list[str], Path]]) -> list[Run]:
    """Each `python -m pydarknet ARGV` as a child of one interpreter that imported pydarknet once."""
    if not jobs:
        return []
    parallel = os.cpu_count() or 2
    proc = subprocess.run([sys.executable, "-c", ZYGOTE, str(TIMEOUT_S), str(parallel)], cwd=ROOT,
                          input=json.dumps([(argv, str(d)) for argv, d in jobs]), capture_output=True,
                          text=True, timeout=TIMEOUT_S * len(jobs))
    assert proc.returncode == 0, proc.stderr
    return [_read(d, code, rss) for (_, d), (code, rss) in zip(jobs, json.loads(proc.stdout), strict=True)]


def run_fresh(argv: list[str], d: Path) -> Run:
    """A fresh `python -m pydarknet ARGV` from the repository root, with its own peak RSS."""
    with open(d / "stdout", "wb") as out, open(d / "stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pydarknet", *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
        timer = threading.Timer(TIMEOUT_S, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    return _read(d, proc.returncode, usage.ru_maxrss)


@dataclass
class Case:
    run: Run
    pattern: str  # BAD cases: what the one stderr line must match
    dir: Path


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """The results of the cases selected in this session."""
    here = sys.modules[__name__]
    wanted = set()
    for item in request.session.items:
        if getattr(item, "module", None) is here:
            params = getattr(item, "callspec", None)
            wanted.add(params.params["name"] if params else item.originalname.removeprefix("test_"))
    names = sorted(wanted & (BAD.keys() | GOOD.keys()))
    # Neutral directory names: Darknet's label rule rewrites the first "images"/"raw" in a path.
    dirs = {name: tmp_path_factory.mktemp(f"case{i}") for i, name in enumerate(names)}
    built = {name: (GOOD[name](dirs[name]), "") if name in GOOD else BAD[name](dirs[name])
             for name in names if name not in FRESH}
    with ThreadPoolExecutor(max_workers=len(FRESH)) as pool:
        # Fresh cases build and run (the 12000x12000 PNG takes seconds) beside the forked ones.
        fresh = {name: pool.submit(lambda n: run_fresh(GOOD[n](dirs[n]), dirs[n]), name)
                 for name in names if name in FRESH}
        forked = run_forked([(argv, dirs[name]) for name, (argv, _) in built.items()])
        results = {name: Case(run, built[name][1], dirs[name]) for name, run in zip(built, forked, strict=True)}
        results.update({name: Case(future.result(), "", dirs[name]) for name, future in fresh.items()})
    return results


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_one_line(name: str, runs: dict[str, Case]) -> None:
    run, pattern = runs[name].run, runs[name].pattern
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), run.stderr
    assert lines[0].startswith("pydarknet: "), lines[0]
    assert re.search(pattern, lines[0]), (pattern, lines[0])


def _ok(run: Run) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stderr


def test_odd_images(runs: dict[str, Case]) -> None:
    run = runs["odd_images"].run
    _ok(run)
    sizes = [(r["width"], r["height"]) for r in map(json.loads, run.stdout.splitlines())]
    assert sizes == [(1, 1), (20, 30), (30, 20), (35, 25)]


def test_huge_image(runs: dict[str, Case]) -> None:
    case = runs["huge_image"]
    _ok(case.run)
    assert case.run.stdout.startswith(f"{case.dir / 'big.png'}: Predicted in ")
    assert case.run.max_rss_kb < MAX_RSS_KB


def test_labels_outside_unit_skipped(runs: dict[str, Case]) -> None:
    case = runs["labels_outside_unit_skipped"]
    _ok(case.run)
    label = case.dir / "labels" / "a.txt"
    assert (case.dir / "backup" / "net_final.weights").is_file()
    assert f"{label}:2: cx=1.5 is outside" in case.run.stderr
    assert f"{label}:3: expected 5 fields" in case.run.stderr
    assert re.search(r"^warning: skipped 2 bad label lines", case.run.stderr, re.M), case.run.stderr


def test_unused_option(runs: dict[str, Case]) -> None:
    case = runs["unused_option"]
    _ok(case.run)
    cfg = case.dir / "net.cfg"
    where = at(cfg, cfg.read_text(), "foo=1")
    assert re.search(f"^warning: {where}Unused field: 'foo = 1'$", case.run.stderr, re.M), case.run.stderr
    assert "conv" in case.run.stdout
