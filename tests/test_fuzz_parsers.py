"""Property tests for everything that reads user files: on any input the cfg parser, the network
builder, the .data/list/names/label readers and the weights reader either succeed or raise
DarknetError, never anything else; what they accept round-trips.

Derandomized (the same examples every run, no example database) so a failure reproduces in CI.
Hypothesis costs ~1 ms per drawn value on a small machine, so most generators draw one byte string
and read their choices from it (`Choices`): one draw per example, and shrinking the bytes (shorter,
smaller) still shrinks the example (fewer, earlier choices).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydarknet
from conftest import FIXTURES
from pydarknet.cfg import parse_cfg_text, write_cfg
from pydarknet.data.datafile import read_data_file, read_list
from pydarknet.data.labels import read_labels
from pydarknet.errors import DarknetError
from pydarknet.layers.registry import BUILDERS
from pydarknet.names import read_names
from pydarknet.network import Darknet
from pydarknet.weights import HEADER_INTS, load_weights, weights_bytes

BASE = settings(deadline=None, derandomize=True, database=None,
                # conftest's autouse chdir fixture runs once per test, not per example: harmless here
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Generated inputs per property; the project asks for at least 10,000 per run in total.
EXAMPLES = {"any_text": 2500, "token_text": 1000, "structured": 1500, "network": 1500, "data": 1000,
            "list": 500, "labels": 1200, "weights_random": 500, "weights_cut": 300, "weights_header": 200,
            "weights_partial": 50}
VOC = FIXTURES / "mini_voc"


def fuzz(name: str) -> settings:
    return settings(BASE, max_examples=EXAMPLES[name])


def test_example_budget() -> None:
    assert sum(EXAMPLES.values()) >= 10_000


class Choices:
    """Choices read from a byte string, 0 once it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def below(self, n: int) -> int:
        byte = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return byte % n

    def pick(self, items: Sequence[str]) -> str:
        return items[self.below(len(items))]


def joined(table: Sequence[str]) -> st.SearchStrategy[str]:
    """Strings made of entries of `table`, one per drawn byte."""
    return st.binary(max_size=80).map(lambda data: "".join(table[b % len(table)] for b in data))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for files that examples overwrite (pytest's tmp_path is per test, not per example)."""
    return tmp_path_factory.mktemp("fuzz")


# --- (a) cfg text ------------------------------------------------------------------------------------

def assert_round_trip(text: str) -> None:
    """Parsed sections survive write_cfg -> parse_cfg_text: same kinds, same options in order."""
    sections = parse_cfg_text(text)
    again = parse_cfg_text(write_cfg(sections))
    assert [s.kind for s in again] == [s.kind for s in sections]
    for a, b in zip(again, sections, strict=True):
        assert [(k, o.value) for k, o in a.options.items()] == [(k, o.value) for k, o in b.options.items()]


# Characters the parser treats specially, every kind of Unicode blank and line break, and others.
CFG_CHARS = ("a[]=#;\n \t\r[]=\n\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029\u3000\x00\ud800"
             "netwok0123456789-.,_é中\U0001f600")
CFG_TOKENS = ["\n", "[net]", "[", "]", "=", "#", ";", " ", "\t", "\r\n", "net", "convolutional", "route",
              "filters", "layers", "-1", "3", "0", "1.5", "nan", "[route]", "x=", "=y", "\x85", "\u2028",
              "\x0c", "\xa0", "[[", "]]", "=="]


@fuzz("any_text")
@given(joined(CFG_CHARS))
def test_cfg_parser_on_any_text(text: str) -> None:
    try:
        assert_round_trip(text)
    except DarknetError as err:
        assert err.file == "<cfg>" and err.line is not None


@fuzz("token_text")
@given(joined(CFG_TOKENS))
def test_cfg_parser_on_cfg_like_text(text: str) -> None:
    try:
        assert_round_trip("[net]\n" + text)
    except DarknetError as err:
        assert err.file == "<cfg>" and err.line is not None


NAMES = ["filters", "size", "a.b", "x-1", "_", "K", "é", "net", "network", "l2]", "a[b", "1"]
VALUES = ["", "1", "-1", "3.0", "a=b", "x]", "[y", "#z", ";w", "1,2,,3", "é", "=", "0x10"]
BLANKS = ["", " ", "\t", " \t "]
FILLERS = ["", "# comment", ";x=1", "  \t", "#[net]", "\xa0"]


def structured_cfg(data: bytes) -> tuple[str, list[tuple[str, dict[str, tuple[str, int]]]]]:
    """Cfg text with comments, blank lines, blanks inside lines and repeated keys, and the sections it
    must parse to: (kind, {key: (first value, line)})."""
    c = Choices(data)
    lines: list[str] = []
    expected: list[tuple[str, dict[str, tuple[str, int]]]] = []
    for kind in [c.pick(["net", "network"])] + [c.pick(NAMES) for _ in range(c.below(5))]:
        lines += [c.pick(FILLERS) for _ in range(c.below(3))]
        lines.append(f"{c.pick(BLANKS)}[{kind}]{c.pick(BLANKS)}")
        options: dict[str, tuple[str, int]] = {}
        for _ in range(c.below(6)):
            key, value = c.pick(NAMES), c.pick(VALUES) + c.pick(VALUES)
            split = c.below(len(value) + 1)
            lines.append(f"{c.pick(BLANKS)}{key}{c.pick(BLANKS)}={c.pick(BLANKS)}{value[:split]}"
                         f"{c.pick(BLANKS)}{value[split:]}")
            options.setdefault(key, (value, len(lines)))
        expected.append((kind, options))
    return c.pick(["\n", "\r\n"]).join(lines), expected


@fuzz("structured")
@given(st.binary(max_size=200).map(structured_cfg))
def test_structured_cfg_parses_as_written(case: tuple[str, list]) -> None:
    text, expected = case
    sections = parse_cfg_text(text)
    assert [(s.kind, {k: (o.value, o.line) for k, o in s.options.items()}) for s in sections] == expected
    assert_round_trip(text)


# --- (b) networks from random sections ---------------------------------------------------------------

# Per kind and option: values that make sense, and others (BAD, FILES).
BAD = ["", "0", "-1", "-2", "abc", "nan", "inf", "-inf", "1.5", "1e1", "0x10", "1e999", "1e300", "2147483648",
       "-1,2", ",", "9"]
ACTIVATIONS = ["leaky", "linear", "logistic", "relu", "mish", "relu6"]  # the last two: AlexeyAB's
OPTIONS: dict[str, dict[str, list[str]]] = {
    "convolutional": {"filters": ["1", "2", "8", "6", "25", "30", "125"], "size": ["1", "2", "3"],
                      "stride": ["1", "2"], "pad": ["0", "1"], "padding": ["0", "1", "2"], "groups": ["1", "2"],
                      "activation": ACTIVATIONS, "batch_normalize": ["0", "1"], "binary": [], "flipped": []},
    "connected": {"output": ["1", "4", "10"], "activation": ACTIVATIONS, "batch_normalize": ["0", "1"]},
    "maxpool": {"size": ["1", "2", "3"], "stride": ["1", "2", "3"], "padding": ["0", "1", "2"],
                "stride_x": ["1", "2"], "maxpool_depth": ["0", "0", "1"], "out_channels": ["1", "2", "3"]},
    "avgpool": {},
    "dropout": {"probability": ["0", "0.5", "0.9"]},
    "cost": {"type": ["sse", "L1", "masked", "smooth"], "scale": ["1", "0.5"]},
    "upsample": {"stride": ["1", "2", "-2"], "scale": ["1", "0.5"]},
    "route": {"layers": ["-1", "-2", "-3", "0", "1", "-1,-2", "-1,0", "-1,-1,-3"], "groups": ["1", "2"],
              "group_id": ["0", "1"]},
    "shortcut": {"from": ["-1", "-2", "-3", "0", "-1,-2"], "activation": ACTIVATIONS, "alpha": ["1", "0.5"],
                 "beta": ["1", "2"], "weights_type": ["none", "per_feature", "per_channel"],
                 "weights_normalization": ["none", "relu", "softmax"]},
    "sam": {"from": ["-1", "-2", "-3"], "activation": ACTIVATIONS},
    "scale_channels": {"from": ["-1", "-2", "-4"], "scale_wh": ["0", "1"], "activation": ACTIVATIONS},
    "yolo": {"classes": ["1", "2", "80"], "num": ["1", "3", "6"], "mask": ["0", "0,1,2", "3,4,5"],
             "anchors": ["", "10,13", "10,13,16,30,33,23"], "scale_x_y": ["1", "1.05", "2"],
             "new_coords": ["0", "1"], "nms_kind": ["default", "greedynms", "diounms", "cornersnms"],
             "iou_loss": ["mse", "ciou"]},
    "reorg": {"stride": ["1", "2"], "reverse": ["0", "1"], "flatten": []},
    "region": {"classes": ["1", "20", "5"], "num": ["1", "5"], "coords": ["4"], "softmax": ["0", "1"],
               "anchors": ["", "0.5,1", "1,1,2,2,3,3,4,4,5,5"], "background": ["0", "1"],
               "tree": [], "map": []},
    "softmax": {"groups": ["1", "2"], "temperature": ["1", "0.5"], "tree": []},
    "lstm": {"output": ["4"]},
    "bogus": {"size": ["1"]},
}
NET_OPTIONS = {"width": [str(i) for i in range(4, 17)], "height": [str(i) for i in range(4, 17)],
               "channels": ["1", "3"], "batch": ["2", "4"], "subdivisions": ["1", "2"],
               "policy": ["steps", "poly", "constant"], "steps": ["1,2"], "scales": ["0.1,0.1"],
               "learning_rate": ["0.001"], "inputs": []}
KINDS = sorted(BUILDERS.keys() & OPTIONS.keys()) * 4 + ["lstm", "bogus"]  # mostly buildable kinds
FILES = ["no_such.tree", "", "cfg", "data/voc.names"]  # missing, a directory, not a tree
REQUIRED = {"width", "height", "channels", "batch", "steps", "scales", "layers", "from"}  # else little builds


def test_fuzzed_kinds_cover_the_registry() -> None:
    assert set(BUILDERS) - {"conv"} <= set(OPTIONS)


def network_cfg(data: bytes) -> str:
    """[net] and 1-6 random sections, each with some of its options; a [region] mostly comes with the
    convolution its classes and num need."""
    c = Choices(data)
    lines: list[str] = []
    for kind in ["net"] + [c.pick(KINDS) for _ in range(1 + c.below(6))]:
        if kind == "region" and c.below(4):
            classes, num = c.pick(OPTIONS["region"]["classes"]), c.pick(OPTIONS["region"]["num"])
            lines += ["[convolutional]", f"filters={int(num) * (5 + int(classes))}", "[region]",
                      f"classes={classes}", f"num={num}"]
        elif kind == "yolo" and c.below(4):
            classes, mask = c.pick(OPTIONS["yolo"]["classes"]), c.pick(OPTIONS["yolo"]["mask"])
            lines += ["[convolutional]", f"filters={len(mask.split(',')) * (5 + int(classes))}", "[yolo]",
                      f"classes={classes}", f"mask={mask}", "num=6"]
        else:
            lines.append(f"[{kind}]")
        # A bad value for 1 option in 64 of [net] and 1 in 16 of the layers, so that many networks build.
        for key, good in (NET_OPTIONS if kind == "net" else OPTIONS[kind]).items():
            choice = c.below(64 if kind == "net" else 16)
            if choice == 0:
                lines.append(f"{key}={c.pick(FILES if key in ('tree', 'map') else BAD)}")
            elif good and (choice % 2 or key in REQUIRED):
                lines.append(f"{key}={c.pick(good)}")
    return "\n".join(lines) + "\n"


@fuzz("network")
@given(st.binary(min_size=40, max_size=200).map(network_cfg))
def test_network_builds_or_names_the_problem(text: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = Darknet(parse_cfg_text(text, "fuzz.cfg"), "fuzz.cfg")
    except DarknetError as err:
        assert err.file == "fuzz.cfg" and (err.line is not None or err.message.endswith("no layers")), err
        return
    # What builds also runs, with the shapes the builders announced (kept small: no huge upsampling).
    if sum(s.size for s in net.shapes) > 200_000:
        return
    x = torch.zeros(1, net.input_shape.c, net.input_shape.h, net.input_shape.w)
    with torch.no_grad():
        outs = net.eval().layer_outputs(x)
    for out, shape, kind in zip(outs, net.shapes, net.kinds, strict=True):
        # A [softmax] output is Darknet's flat vector (batch, n); [dropout]/[cost]/[route] pass it on.
        flat = out.dim() == 2 and shape.h == shape.w == 1 and kind in ("softmax", "dropout", "cost", "route")
        assert flat or tuple(out.shape[1:]) == (shape.c, shape.h, shape.w), (kind, out.shape, shape)
        assert out[0].numel() == shape.size


# --- (c) .data, list, names and label files ------------------------------------------------------------

DATA_TOKENS = ["classes", "train", "names", "=", " ", "\n", "\t", "#", ";", "x", "20", "\r\n", "\x00", "é",
               "==", "a b"]
FILE_BYTES = st.binary(max_size=80) | joined(DATA_TOKENS).map(str.encode)


@fuzz("data")
@given(FILE_BYTES)
def test_data_file_reader(scratch: Path, data: bytes) -> None:
    path = scratch / "f.data"
    path.write_bytes(data)
    try:
        options = read_data_file(path)
    except DarknetError as err:
        assert err.file == str(path) and err.line is not None
        return
    for key, value in options.items():
        assert key and value and not any(c.isspace() for c in key + value)
        assert 1 <= options.lines[key] <= len(data.splitlines()) + 1


@fuzz("list")
@given(FILE_BYTES, st.integers(-1, 5))
def test_list_and_names_readers(scratch: Path, data: bytes, classes: int) -> None:
    path = scratch / "f.list"
    path.write_bytes(data)
    assert all(item and item == item.strip() for item in read_list(path))
    try:
        names = read_names(path, classes if classes >= 0 else None)
    except DarknetError as err:
        assert err.file == str(path) and classes >= 0
        return
    assert len(names) >= classes


LABEL_TOKENS = ["0", "1", "19", "20", "-1", "0.5", "0.0", "1.0", "1.5", "-0.1", "nan", "inf", "1e-3", "abc",
                "0x1", "1" * 5000, "٣", "1e999", "\x00", "0.25"]


def label_text(data: bytes) -> bytes:
    """Lines of 0-6 fields (mostly 5) from LABEL_TOKENS, blanks of several kinds between them."""
    c = Choices(data)
    lines = []
    for _ in range(c.below(6)):
        fields = [c.pick(LABEL_TOKENS) for _ in range((5, 5, 5, 0, 1, 4, 6)[c.below(7)])]
        lines.append(c.pick([" ", "\t", "  "]).join(fields))
    return c.pick(["\n", "\r\n", "\n\n"]).join(lines).encode()


@fuzz("labels")
@given(FILE_BYTES | st.binary(max_size=100).map(label_text), st.sampled_from(["skip", "stop"]),
       st.integers(0, 20))
def test_label_reader(scratch: Path, data: bytes, policy: str, classes: int) -> None:
    path = scratch / "f.txt"
    path.write_bytes(data)
    try:
        labels = read_labels(path, policy, classes or None)
    except DarknetError as err:
        assert policy == "stop" and err.file == str(path) and err.line is not None
        return
    boxes = labels.boxes
    assert boxes.shape[1:] == (5,) and boxes.dtype == np.float32
    assert np.isfinite(boxes).all() and (boxes[:, 1:] >= 0).all() and (boxes[:, 1:] <= 1).all()
    assert (boxes[:, 0] >= 0).all() and (not classes or (boxes[:, 0] < classes).all())
    assert policy == "skip" or not labels.problems


# --- (d) weights ---------------------------------------------------------------------------------------

VALID = (VOC / "net.weights").read_bytes()


@pytest.fixture(scope="module")
def voc_net() -> Darknet:
    return pydarknet.load(VOC / "net.cfg", exact=True)


def test_valid_weights_round_trip(voc_net: Darknet) -> None:
    load_weights(voc_net, VOC / "net.weights")
    assert weights_bytes(voc_net) == VALID


def _load(net: Darknet, path: Path, data: bytes, upto: int | None = None) -> bool:
    """Whether `data` loads; anything but a DarknetError naming the file fails the test."""
    path.write_bytes(data)
    try:
        load_weights(net, path, upto)
    except DarknetError as err:
        assert err.file == str(path), err
        return False
    return True


@fuzz("weights_random")
@given(st.binary(max_size=64))
def test_weights_random_bytes(voc_net: Darknet, scratch: Path, data: bytes) -> None:
    assert not _load(voc_net, scratch / "r.weights", data)


@fuzz("weights_cut")
@given(st.integers(0, len(VALID) - 1) | st.binary(min_size=1, max_size=9))
def test_weights_cut_or_extended(voc_net: Darknet, scratch: Path, change: int | bytes) -> None:
    data = VALID[:change] if isinstance(change, int) else VALID + change
    assert not _load(voc_net, scratch / "c.weights", data)


HEADER_INT = st.sampled_from([0, 1, 2, 999, 1000, 1001, -1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1)


@fuzz("weights_header")
@given(HEADER_INT, HEADER_INT, HEADER_INT, st.sampled_from([0, 5, 2**31, 2**63, 2**64 - 1]),
       st.sampled_from([4, 8]))
def test_weights_any_header(voc_net: Darknet, scratch: Path, major: int, minor: int, revision: int,
                            seen: int, seen_bytes: int) -> None:
    floats = VALID[HEADER_INTS.size + 8:]
    data = HEADER_INTS.pack(major, minor, revision) + seen.to_bytes(8, "little")[:seen_bytes] + floats
    if _load(voc_net, scratch / "h.weights", data):
        assert weights_bytes(voc_net) == data


@fuzz("weights_partial")
@given(st.integers(0, 20), st.integers(0, 20))
def test_partial_weights_round_trip(voc_net: Darknet, scratch: Path, saved: int, loaded: int) -> None:
    load_weights(voc_net, VOC / "net.weights")
    data = weights_bytes(voc_net, upto=saved)
    accepted = _load(voc_net, scratch / "p.weights", data, upto=loaded)
    weighted = [i for i, k in enumerate(voc_net.kinds) if k == "convolutional"]
    assert accepted == (sum(i < saved for i in weighted) == sum(i < loaded for i in weighted))
    if accepted:
        assert weights_bytes(voc_net, upto=loaded) == data
