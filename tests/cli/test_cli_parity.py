"""The CLI prints exactly what the C Darknet printed for the fixtures (timing line aside).

Images are fed as lossless PNGs of the pixels Darknet's stb_image decoded (fixtures/images), so the
comparison is free of JPEG decoder differences.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import FIXTURES, ROOT, cfg_for, infer_dirs
from pydarknet.cli.main import main

DATA = {"mini_voc": "cfg/voc.data", "mini_tiny": "cfg/voc.data", "mini_9k": "cfg/combine9k.data"}


def stb_png(infer_dir, tmp_path):
    meta = json.loads((infer_dir / "layers.json").read_text())
    stem = meta["image"].split("/")[-1].split(".")[0]
    rgb = np.load(FIXTURES / "images" / f"{stem}_stb_hwc_uint8.npz")["image"]
    path = tmp_path / f"{stem}.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


@pytest.mark.parametrize("infer_dir", infer_dirs(list(DATA)), ids=lambda d: f"{d.parent.name}/{d.name}")
@pytest.mark.parametrize("mode", ["thresh0.25", "default"])
def test_detector_test_prints_darknet_lines(infer_dir, mode, tmp_path, capsys):
    image = stb_png(infer_dir, tmp_path)
    args = ["detector", "test", DATA[infer_dir.parent.name], str(cfg_for(infer_dir)),
            str(infer_dir.parent / "net.weights"), str(image), "-out", str(tmp_path / "pred")]
    if mode == "thresh0.25":
        args += ["-thresh", ".25"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    expected = (infer_dir / f"cli_stdout_{mode}.txt").read_text().splitlines()
    assert out[0].startswith(f"{image}: Predicted in ") and out[0].endswith(" seconds.")
    assert out[1:] == expected[1:]
    assert (tmp_path / "pred.jpg").stat().st_size > 0


@pytest.mark.parametrize("infer_dir", infer_dirs(["mini_cls"]), ids=lambda d: d.name)
def test_classifier_predict_prints_darknet_lines(infer_dir, tmp_path, capsys):
    image = stb_png(infer_dir, tmp_path)
    args = ["classifier", "predict", "cfg/imagenet1k.data", str(cfg_for(infer_dir)),
            str(infer_dir.parent / "net.weights"), str(image)]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == (infer_dir / "cli_stdout.txt").read_text().splitlines()


def test_summary_command(capsys):
    assert main(["summary", str(ROOT / "cfg" / "yolov2-voc.cfg")]) == 0
    out = capsys.readouterr().out
    assert "   30 conv    125  1 x 1 / 1    13 x  13 x1024   ->    13 x  13 x 125  0.043 BFLOPs" in out
    assert out.rstrip().endswith("Floating Point Operations: 29.36 Bn")
