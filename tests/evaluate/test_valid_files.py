"""`detector valid`: Darknet's result files, line by line, against independently computed expectations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import pydarknet
from conftest import FIXTURES, ROOT
from pydarknet.cli.main import main
from pydarknet.data.synthetic import make_shapes_dataset
from pydarknet.detection import Candidates
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError
from pydarknet.evaluate.valid import (
    COCO_IDS,
    basecfg,
    coco_image_id,
    coco_records,
    imagenet_lines,
    validate_detector,
    voc_lines,
)
from pydarknet.image import letterbox_image, load_image
from pydarknet.wordtree import read_map

CFG, WEIGHTS = ROOT / "cfg" / "shapes.cfg", ROOT / "models" / "shapes.weights"
NUM = r"-?\d+\.\d{6}"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("valid") / "shapes"
    make_shapes_dataset(out, n_train=0, n_valid=10, size=(160, 120), seed=3)
    return out


@pytest.fixture(scope="module")
def net() -> pydarknet.Darknet:
    return pydarknet.load(CFG, WEIGHTS)


def data_file(shapes: Path, name: str, **options: str) -> Path:
    lines = {"classes": "5", "valid": str(shapes / "valid.txt"), "names": str(shapes / "shapes.names"),
             "results": str(shapes / f"results_{name}"), **options}
    path = shapes / f"{name}.data"
    path.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
    return path


@pytest.fixture(scope="module")
def expected_boxes(net: pydarknet.Darknet, shapes: Path) -> list[tuple[str, int, int, list]]:
    """Per image: (path, w, h, detections) from the public detect() (relative boxes, same thresholds)."""
    paths = (shapes / "valid.txt").read_text().split()
    dets = Detector(net, thresh=.005, hier_thresh=.5, nms=.45).detect(paths)
    sizes = [load_image(p).shape[1:] for p in paths]
    return [(p, w, h, d) for p, (h, w), d in zip(paths, sizes, dets)]


def test_voc_files_line_by_line(net, shapes, expected_boxes):
    files = validate_detector(net, data_file(shapes, "voc"), progress=False)
    names = (shapes / "shapes.names").read_text().split()
    assert [f.name for f in files] == [f"comp4_det_test_{n}.txt" for n in names]
    expected: dict[int, list[tuple]] = {c: [] for c in range(5)}
    for path, w, h, dets in expected_boxes:
        for d in dets:
            x, y, bw, bh = (v * s for v, s in zip(d.bbox, (w, h, w, h)))
            box = (max(x - bw / 2 + 1, 1), max(y - bh / 2 + 1, 1), min(x + bw / 2 + 1, w), min(y + bh / 2 + 1, h))
            for c, p in zip(d.classes, d.probs):
                expected[c].append((Path(path).stem, p, box))
    total = 0
    for c, f in enumerate(files):
        lines = f.read_text().splitlines()
        assert len(lines) == len(expected[c]) > 0
        for line, (image_id, prob, box) in zip(lines, expected[c]):
            assert re.fullmatch(rf"\d{{6}} {NUM} {NUM} {NUM} {NUM} {NUM}", line), line
            fields = line.split()
            assert fields[0] == image_id and fields[1] == f"{prob:f}"
            assert np.allclose([float(v) for v in fields[2:]], box, atol=2e-3)
        total += len(lines)
    assert total > 100  # thresh .005 keeps many low-scoring boxes, as Darknet's valid does


def test_coco_json_line_by_line(net, shapes, expected_boxes):
    (path,) = validate_detector(net, data_file(shapes, "coco", eval="coco"), progress=False)
    assert path.name == "coco_results.json"
    text = path.read_text()
    assert text.startswith("[\n{") and text.endswith("}\n]\n")
    records = json.loads(text)
    lines = text.splitlines()[1:-1]
    pattern = rf'\{{"image_id":\d+, "category_id":\d+, "bbox":\[{NUM}, {NUM}, {NUM}, {NUM}\], "score":{NUM}\}},?'
    assert len(lines) == len(records) and all(re.fullmatch(pattern, line) for line in lines)
    expected = []
    for image, w, h, dets in expected_boxes:
        for d in dets:
            x, y, bw, bh = (v * s for v, s in zip(d.bbox, (w, h, w, h)))
            x0, y0 = max(x - bw / 2, 0), max(y - bh / 2, 0)
            box = [x0, y0, min(x + bw / 2, w) - x0, min(y + bh / 2, h) - y0]
            expected += [(int(Path(image).stem), COCO_IDS[c], box, p) for c, p in zip(d.classes, d.probs)]
    assert len(records) == len(expected)
    for r, (image_id, category, box, score) in zip(records, expected):
        assert r["image_id"] == image_id and r["category_id"] == category
        assert r["score"] == pytest.approx(score, abs=1e-6)
        assert np.allclose(r["bbox"], box, atol=2e-3)


def test_cli_out_prefix(shapes, capsys):
    data = data_file(shapes, "prefix")
    assert main(["detector", "valid", str(data), str(CFG), str(WEIGHTS), "-out", "run1_"]) == 0
    written = sorted(p.name for p in (shapes / "results_prefix").iterdir())
    assert written == sorted(f"run1_{n}.txt" for n in (shapes / "shapes.names").read_text().split())
    assert "Total Detection Time:" in capsys.readouterr().err


def dense(boxes: np.ndarray, probs: np.ndarray) -> Candidates:
    """Candidates holding every row of `boxes` and the non-zero `probs`."""
    box, cls = np.nonzero(probs)
    rows = np.arange(len(boxes))
    return Candidates(len(boxes), rows, boxes, np.ones(len(boxes), np.float32), box, cls, probs[box, cls])


def test_c_formatting_hand_made():
    boxes = np.array([[10.5, 20, 5, 4], [1, 2, 10, 10], [95, 48, 20, 10]], np.float32)
    probs = np.zeros((3, 12), np.float32)
    probs[0, 1], probs[1, 0], probs[2, 0], probs[2, 11] = .5, .25, .125, .75
    assert voc_lines("img", dense(boxes, probs), 100, 50) == [
        (1, "img 0.500000 9.000000 19.000000 14.000000 23.000000"),  # +1: 1-based pixels
        (0, "img 0.250000 1.000000 1.000000 7.000000 8.000000"),  # clamped to 1
        (0, "img 0.125000 86.000000 44.000000 100.000000 50.000000"),  # clamped to w, h
        (11, "img 0.750000 86.000000 44.000000 100.000000 50.000000"),
    ]
    assert coco_records(42, dense(boxes, probs), 100, 50) == [
        '{"image_id":42, "category_id":2, "bbox":[8.000000, 18.000000, 5.000000, 4.000000], "score":0.500000}',
        '{"image_id":42, "category_id":1, "bbox":[0.000000, 0.000000, 6.000000, 7.000000], "score":0.250000}',
        '{"image_id":42, "category_id":1, "bbox":[85.000000, 43.000000, 15.000000, 7.000000], "score":0.125000}',
        '{"image_id":42, "category_id":13, "bbox":[85.000000, 43.000000, 15.000000, 7.000000], "score":0.750000}',
    ]
    assert imagenet_lines(7, dense(boxes, probs), 100, 50)[0] == "7 2 0.500000 8.000000 18.000000 13.000000 22.000000"
    # C stores `b.x - b.w/2. + 1` (double) into a float.
    odd = np.array([[0.1, 0.7, 0.3, 0.2]], np.float32)
    x, w = np.float64(odd[0, 0]), np.float64(odd[0, 2])
    line = voc_lines("i", dense(odd, np.ones((1, 1), np.float32)), 100, 50)[0][1]
    assert line.split()[4] == f"{float(np.float32(x + w / 2 + 1)):f}"


def test_darknet_ids():
    assert basecfg("/voc/VOC2007/JPEGImages/000123.jpg") == "000123"
    assert basecfg("/a.b/x.y.jpg") == "x"
    assert coco_image_id("/coco/val2014/COCO_val2014_000000000042.jpg") == 42
    assert coco_image_id("/shapes/images/valid/000007.jpg") == 7
    assert coco_image_id("/data_1/img5.jpg") == 1  # last '_' wins, then atoi
    assert coco_image_id("/data/img.jpg") == 0


def test_imagenet_eval_uses_the_data_map(tmp_path):
    """YOLO9000 (mini_9k fixture): eval=imagenet writes 200 classes through map= (Darknet's inet9k.map)."""
    net = pydarknet.load(FIXTURES / "mini_9k" / "net.cfg", FIXTURES / "mini_9k" / "net.weights")
    images = ["data/dog.jpg", "data/horses.jpg"]
    tmp = tmp_path
    (tmp / "list.txt").write_text("\n".join(images) + "\n")
    data = tmp / "9k.data"
    data.write_text(f"valid = {tmp / 'list.txt'}\nnames = data/9k.names\nmap = data/inet9k.map\n"
                    f"eval = imagenet\nresults = {tmp / 'results'}\n")
    thresh = 2e-5  # the fixture's random weights give tiny leaf probabilities
    (path,) = validate_detector(net, data, thresh=thresh, progress=False)
    assert path.name == "imagenet-detection.txt"
    lines = path.read_text().splitlines()
    assert lines
    # Independently: prob of ImageNet class j = objectness * absolute tree prob of map[j], before NMS.
    class_map, head = read_map("data/inet9k.map"), net.heads[-1][1]
    p = head.params
    allowed = set()
    sizes = {}
    for number, image in enumerate(images, 1):
        im = load_image(image)
        sizes[number] = im.shape[1:]
        with torch.no_grad():
            out = net(torch.from_numpy(letterbox_image(im, net.config.width, net.config.height))[None])[0]
        v = head.tree_entries(out, np.arange(p.n * out[0].numel()))  # (boxes, entries), absolute tree probs
        probs = v[:, 4:5] * v[:, 5 + class_map]  # (boxes, 200)
        allowed |= {(number, j + 1, f"{probs[b, j]:f}") for b, j in zip(*np.nonzero(probs > thresh))}
    data.write_text(data.read_text().replace("eval = imagenet", "eval = coco"))
    with pytest.raises(DarknetError, match="eval=coco maps 80 classes to COCO ids; the network has 9418"):
        validate_detector(net, data, progress=False)
    for line in lines:
        assert re.fullmatch(rf"\d+ \d+ {NUM} {NUM} {NUM} {NUM} {NUM}", line), line
        number, cls, prob, *box = line.split()
        assert (int(number), int(cls), prob) in allowed
        h, w = sizes[int(number)]
        x0, y0, x1, y1 = map(float, box)
        assert 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h


def test_bad_eval_and_imagenet_on_a_small_net(net, shapes):
    with pytest.raises(DarknetError, match=r"badeval\.data:5: eval=vco: expected one of voc, coco, imagenet"):
        validate_detector(net, data_file(shapes, "badeval", eval="vco"), progress=False)
    with pytest.raises(DarknetError, match="200 classes"):
        validate_detector(net, data_file(shapes, "inet", eval="imagenet"), progress=False)
