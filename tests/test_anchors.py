"""k-means anchors (distance 1 - IoU), writing them into a cfg, the plot and `pydarknet calc_anchors`."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

import pydarknet.anchors as anchors_mod
from conftest import ROOT
from pydarknet.anchors import (
    iou_wh,
    kmeans_anchors,
    kmeans_pp_init,
    load_box_sizes,
    plot_clusters,
    region_grid,
    write_region_anchors,
)
from pydarknet.cli.main import main
from pydarknet.errors import DarknetError
from pydarknet.network import build_network

PLANTED = np.array([[0.04, 0.06], [0.12, 0.30], [0.35, 0.15], [0.55, 0.70]])  # ascending area


def planted(n_per: int, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wh = np.repeat(PLANTED, n_per, 0) * np.exp(rng.normal(0, sigma, (len(PLANTED) * n_per, 2)))
    return rng.permutation(np.clip(wh, 1e-3, 1.0))


def direct_iou(wh: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """IoU of boxes centred at 0 from their corners, per box, for one anchor."""
    x1, y1, x2, y2 = -wh[:, 0] / 2, -wh[:, 1] / 2, wh[:, 0] / 2, wh[:, 1] / 2
    ax1, ay1, ax2, ay2 = -anchor[0] / 2, -anchor[1] / 2, anchor[0] / 2, anchor[1] / 2
    inter = np.clip(np.minimum(x2, ax2) - np.maximum(x1, ax1), 0, None) * \
        np.clip(np.minimum(y2, ay2) - np.maximum(y1, ay1), 0, None)
    return inter / ((x2 - x1) * (y2 - y1) + (ax2 - ax1) * (ay2 - ay1) - inter)


def lloyd(wh: np.ndarray, init: np.ndarray, max_iter: int = 1000) -> tuple[np.ndarray, int]:
    """Plain Lloyd k-means on 1 - IoU, every distance recomputed every iteration."""
    centres, assign = init.copy(), None
    for it in range(1, max_iter + 1):
        new = np.stack([direct_iou(wh, c) for c in centres], 1).argmax(1)
        if assign is not None and np.array_equal(new, assign):
            return centres, it
        assign = new
        centres = np.stack([wh[assign == j].mean(0) for j in range(len(centres))])
    return centres, max_iter


def test_recovers_planted_clusters_and_mean_iou():
    wh = planted(1000, 0.05)
    result = kmeans_anchors(wh, 4, seed=0)
    np.testing.assert_allclose(result.anchors, PLANTED, rtol=0.02)
    ious = np.stack([direct_iou(wh, a) for a in result.anchors], 1)
    np.testing.assert_array_equal(result.assignment, ious.argmax(1))
    assert result.mean_iou == pytest.approx(ious.max(1).mean(), abs=1e-12)
    assert 0.85 < result.mean_iou < 1
    np.testing.assert_allclose(iou_wh(wh[:, None], result.anchors), ious, atol=1e-12)


def test_hamerly_bounds_give_lloyds_result():
    wh = planted(3000, 0.45, seed=3)  # overlapping clusters: many iterations with few moving boxes
    init = kmeans_pp_init(wh, 6, np.random.default_rng(5))
    expected, iterations = lloyd(wh, init)
    result = kmeans_anchors(wh, 6, seed=5, tol=0)
    order = np.argsort(expected[:, 0] * expected[:, 1])
    np.testing.assert_allclose(result.anchors, expected[order], rtol=1e-9)
    assert result.iterations == iterations > 10


def test_seed_determinism():
    wh = planted(500, 0.3)
    a, b, c = (kmeans_anchors(wh, 5, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.anchors, b.anchors)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    assert a.iterations == b.iterations
    inits = [kmeans_pp_init(wh, 5, np.random.default_rng(s)) for s in (7, 8)]
    assert not np.array_equal(*inits)
    assert c.anchors.shape == (5, 2)


def test_kmeans_pp_init():
    wh = planted(200, 0.02)
    picks = [kmeans_pp_init(wh, 4, np.random.default_rng(s)) for s in range(20)]
    rows = {tuple(r) for r in wh}
    assert all(tuple(c) in rows for p in picks for c in p)  # centres are boxes of the data
    # d² sampling: well-separated clusters each get one centre (uniform picks would rarely manage).
    spread = [len(set(np.stack([direct_iou(p, a) for a in PLANTED], 1).argmax(1))) for p in picks]
    assert sum(s == 4 for s in spread) >= 18
    # A box at distance 0 from a chosen centre has probability 0: two sizes give both sizes.
    two = np.array([[0.1, 0.1]] * 50 + [[0.5, 0.2]] * 3)
    for s in range(10):
        init = kmeans_pp_init(two, 2, np.random.default_rng(s))
        assert {tuple(r) for r in init} == {(0.1, 0.1), (0.5, 0.2)}
    with pytest.raises(DarknetError, match="distinct box sizes"):
        kmeans_anchors(two, 3)


def test_emptied_cluster_restarts(monkeypatch):
    wh = planted(300, 0.05)
    # A centre no box is near: it gets no member and must restart at the worst-fitting box.
    monkeypatch.setattr(anchors_mod, "kmeans_pp_init", lambda wh, k, rng: np.vstack([PLANTED[:3], [[1e-4, 1e-4]]]))
    result = kmeans_anchors(wh, 4)
    assert np.bincount(result.assignment, minlength=4).min() > 0
    np.testing.assert_allclose(result.anchors, PLANTED, rtol=0.02)


def test_bad_inputs():
    with pytest.raises(DarknetError, match="cannot make 5 clusters"):
        kmeans_anchors(planted(1, 0.1), 5)
    with pytest.raises(ValueError):
        kmeans_anchors(np.array([[0.1, 0.0], [0.2, 0.2]]), 1)


def anchors_line(cfg) -> list[float]:
    return build_network(cfg).heads[-1][1].params.anchors


def test_write_cfg_same_num_changes_one_line(tmp_path):
    cfg = tmp_path / "shapes.cfg"
    original = (ROOT / "cfg" / "shapes.cfg").read_bytes()
    cfg.write_bytes(original)
    text = "1.0000,1.5000, 2.0000,2.2500, 3.0000,1.0000, 4.0000,4.0000, 5.1234,6.0000"
    write_region_anchors(cfg, text, 5)
    new = cfg.read_bytes()
    old_lines, new_lines = original.splitlines(keepends=True), new.splitlines(keepends=True)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert len(old_lines) == len(new_lines) and len(changed) == 1
    assert new_lines[changed[0]] == f"anchors = {text}\n".encode()
    assert anchors_line(cfg) == pytest.approx([float(v) for v in text.split(",")])
    assert not [p for p in tmp_path.iterdir() if p.name != "shapes.cfg"]  # no temporary file left


def test_write_cfg_new_num_resizes_the_conv(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    original = (ROOT / "cfg" / "yolov2-tiny-voc.cfg").read_text().replace("\n", "\r\n")
    cfg.write_bytes(original.encode())
    write_region_anchors(cfg, "1.0000,1.0000, 3.0000,4.0000, 9.0000,8.0000", 3)
    new = cfg.read_bytes().decode()
    changed = {a: b for a, b in zip(original.split("\r\n"), new.split("\r\n")) if a != b}
    assert new.count("\r\n") == original.count("\r\n") and "\n" not in new.replace("\r\n", "")
    assert sorted(changed.values()) == ["anchors = 1.0000,1.0000, 3.0000,4.0000, 9.0000,8.0000", "filters=75",
                                        "num=3"]
    net = build_network(cfg)
    assert net.heads[-1][1].params.n == 3 and net.heads[-1][1].params.anchors == [1, 1, 3, 4, 9, 8]


def test_write_cfg_adds_missing_options_and_rejects_no_region(tmp_path):
    cfg = tmp_path / "s.cfg"
    text = (ROOT / "cfg" / "shapes.cfg").read_text()
    text = re.sub(r"(?m)^(anchors|num)\s*=.*\n", "", text).replace("filters=50", "filters=10")  # num=1 default
    cfg.write_text(text)
    write_region_anchors(cfg, "2.0000,3.0000, 4.0000,5.0000", 2)
    net = build_network(cfg)
    assert net.heads[-1][1].params.anchors == [2, 3, 4, 5] and net.heads[-1][1].params.n == 2
    plain = tmp_path / "d.cfg"
    plain.write_bytes((ROOT / "cfg" / "darknet19.cfg").read_bytes())
    with pytest.raises(DarknetError, match=r"no \[region\]"):
        write_region_anchors(plain, "1.0000,1.0000", 1)
    assert plain.read_bytes() == (ROOT / "cfg" / "darknet19.cfg").read_bytes()


def test_plot_is_a_readable_png(tmp_path):
    wh = planted(200, 0.1)
    result = kmeans_anchors(wh, 4)
    out = tmp_path / "clusters.png"
    plot_clusters(wh * 13, result.assignment, result.anchors * 13, out)
    img = cv2.imread(str(out))
    assert img.shape == (700, 700, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert len(colours) > 8 and (255, 255, 255) in colours and (0, 0, 0) in colours


def make_dataset(tmp_path, wh: np.ndarray, per_image: int = 10) -> tuple:
    """A Darknet-layout set: images/i.jpg listed in train.txt, labels/i.txt next to it."""
    (tmp_path / "labels").mkdir()
    (tmp_path / "images").mkdir()
    paths = []
    for i in range(0, len(wh), per_image):
        rows = [f"0 0.5 0.5 {w:.6f} {h:.6f}" for w, h in wh[i : i + per_image]]
        (tmp_path / "labels" / f"{i}.txt").write_text("\n".join(rows) + "\n")
        paths.append(str(tmp_path / "images" / f"{i}.jpg"))
    (tmp_path / "train.txt").write_text("\n".join(paths) + "\n")
    data = tmp_path / "set.data"
    data.write_text(f"classes = 2\ntrain = {tmp_path / 'train.txt'}\n")
    return data, paths


def test_load_box_sizes_by_darknet_label_rules(tmp_path):
    data, paths = make_dataset(tmp_path, np.array([[0.1, 0.2], [0.3, 0.4]]))
    with open(tmp_path / "labels" / "0.txt", "a") as fh:
        fh.write("5 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.0 0.3\n")  # class >= classes; zero width
    (tmp_path / "train.txt").write_text(paths[0] + "\n" + str(tmp_path / "images" / "missing.jpg") + "\n")
    sizes = load_box_sizes(data)
    np.testing.assert_allclose(sizes.wh, [[0.1, 0.2], [0.3, 0.4]])
    assert sizes.images == 2 and len(sizes.problems) == 3
    assert any("0.txt:3" in p for p in sizes.problems) and any("missing.txt" in p for p in sizes.problems)
    with pytest.raises(DarknetError, match="0.txt:3"):
        load_box_sizes(data, policy="stop")


def test_cli_prints_anchors_in_grid_cells_and_writes_cfg(tmp_path, capsys):
    wh = planted(100, 0.05)
    data, _ = make_dataset(tmp_path, wh)
    assert main(["calc_anchors", str(data), "-num_of_clusters", "4", "-width", "416", "-height", "320",
                 "--seed", "3", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    printed = [float(v) for v in re.search(r"^anchors = (.*)$", out, re.M).group(1).split(",")]
    expected = kmeans_anchors(np.round(wh, 6), 4, seed=3)
    np.testing.assert_allclose(printed, (expected.anchors * [416 / 32, 320 / 32]).ravel(), atol=5e-5)
    assert f"mean IoU = {expected.mean_iou:.4f}" in out and "400 boxes from 40 images" in out
    assert cv2.imread(str(tmp_path / "p.png")) is not None

    cfg = tmp_path / "shapes.cfg"
    cfg.write_bytes((ROOT / "cfg" / "shapes.cfg").read_bytes())
    assert region_grid(cfg) == (128, 128, 8, 8)  # stride 16: anchors are in its 8x8 grid's cells
    assert main(["calc_anchors", str(data), "--num-of-clusters", "4", "--seed", "3", "--write-cfg", str(cfg)]) == 0
    out = capsys.readouterr().out
    np.testing.assert_allclose(anchors_line(cfg), (expected.anchors * 8).ravel(), atol=5e-5)
    assert "num=4" in out and build_network(cfg).heads[-1][1].params.n == 4


def test_cli_errors_are_one_line(tmp_path, capsys):
    data, _ = make_dataset(tmp_path, planted(3, 0.05))
    assert main(["calc_anchors", str(data), "-num_of_clusters", "5"]) == 2
    assert "-width W -height H" in capsys.readouterr().err
    assert main(["calc_anchors", str(data), "-num_of_clusters", "50", "-width", "416", "-height", "416"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "12 boxes cannot make 50 clusters" in err[0]


YOLO_CFG = """[net]
width=416
height=320
channels=3

[convolutional]
filters=21
size=1
activation=linear

[yolo]
mask = 2,3
anchors = 1,1, 2,2, 3,3, 4,4
classes=2
num=4

[route]
layers=-2

[yolo]
mask=0,1
classes=2
num=4
"""


def test_alexeyab_formats_and_mean_iou_by_hand():
    from pydarknet.anchors import format_anchors_pixels, mean_best_iou_percent

    assert format_anchors_pixels(np.array([[10.4, 13.6], [116.5, 90.0]]), 416) == " 10, 14, 116, 90"
    assert format_anchors_pixels(np.array([[10.4, 13.6]]), 416, padded=False) == "10,14"
    assert format_anchors_pixels(np.array([[1.23456, 2.5]]), 13) == "1.2346,2.5000"  # -width 13: cells
    # IoUs 1 and 10*10/(20*20) = .25 with the one anchor: 62.5 %
    assert mean_best_iou_percent(np.array([[10.0, 10.0], [20.0, 20.0]]), np.array([[10.0, 10.0]])) == 62.5


def test_write_yolo_anchors_sets_every_head_and_checks_num(tmp_path):
    from pydarknet.anchors import write_yolo_anchors

    cfg = tmp_path / "y.cfg"
    cfg.write_text(YOLO_CFG)
    assert write_yolo_anchors(cfg, "10,14, 20,30, 40,50, 60,70", 4) == 2
    text = cfg.read_text()
    assert text.count("anchors = 10,14, 20,30, 40,50, 60,70\n") == 1  # the spelling of the line kept
    assert "[yolo]\nanchors=10,14, 20,30, 40,50, 60,70\nmask=0,1" in text  # added after the header
    assert text.replace("anchors = 10,14, 20,30, 40,50, 60,70", "anchors = 1,1, 2,2, 3,3, 4,4").replace(
        "anchors=10,14, 20,30, 40,50, 60,70\n", "") == YOLO_CFG
    with pytest.raises(DarknetError, match="num=4 but 6 clusters") as err:
        write_yolo_anchors(cfg, "1,1", 6)
    assert err.value.line == 15  # the first head's num=


def test_detector_calc_anchors_prints_alexeyabs_report_and_files(tmp_path, capsys, monkeypatch):
    wh = planted(50, 0.05)
    data, _ = make_dataset(tmp_path, wh)
    label = tmp_path / "labels" / "0.txt"
    label.write_text(label.read_text().replace("0 0.5", "1 0.5", 3))  # 3 boxes of class 1
    monkeypatch.chdir(tmp_path)
    assert main(["detector", "calc_anchors", str(data), "-num_of_clusters", "4", "-width", "416", "-height",
                 "320", "--seed", "3", "-show"]) == 0
    out = capsys.readouterr().out
    expected = kmeans_anchors(np.round(wh, 6), 4, seed=3)
    px = expected.anchors * [416, 320]
    line = ", ".join(f"{w:3.0f},{h:3.0f}" for w, h in px)
    assert out.startswith("\n num_of_clusters = 4, width = 416, height = 320 \n read labels from 20 images \n")
    assert "\ncounters_per_class = 197, 3\n" in out and out.endswith(f"\nanchors = {line}\n")
    iou = float(re.search(r"avg IoU = (\d+\.\d\d) %", out).group(1))
    assert iou == pytest.approx(expected.mean_iou * 100, abs=0.006)
    assert (tmp_path / "anchors.txt").read_text() == line
    assert (tmp_path / "counters_per_class.txt").read_text() == "counters_per_class = 197, 3"
    cloud = cv2.imread(str(tmp_path / "cloud.png"))
    corner = (int(np.float32(px[0, 0]) * np.float32(700 / 416)), int(np.float32(px[0, 1]) * np.float32(700 / 320)))
    assert cloud.shape == (700, 700, 3) and (cloud[corner[1], 0] == 255).all()  # the smallest anchor's rectangle

    cfg = tmp_path / "y.cfg"
    cfg.write_text(YOLO_CFG)
    # the plain calc_anchors on a [yolo] cfg is AlexeyAB's: pixels of the cfg's size, every head written
    assert main(["calc_anchors", str(data), "-num_of_clusters", "4", "--seed", "3", "--write-cfg", str(cfg)]) == 0
    assert "wrote anchors= into the 2 [yolo] sections" in capsys.readouterr().out
    assert cfg.read_text().count(", ".join(f"{w:.0f},{h:.0f}" for w, h in px) + "\n") == 2  # unpadded
    assert main(["detector", "calc_anchors", str(data), "-num_of_clusters", "4"]) == 2
    assert "-width W -height H" in capsys.readouterr().err
