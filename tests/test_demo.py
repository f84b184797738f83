"""`detector demo` on a short video written here: frames, size, fps kept; boxes drawn; Darknet's averaging."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import pydarknet
from pydarknet.cli.main import main
from pydarknet.demo import Frame, FrameAverager, VideoDetector, annotate, run_demo
from pydarknet.names import read_names

ROOT = Path(__file__).parent.parent
CFG, WEIGHTS = ROOT / "cfg" / "shapes.cfg", ROOT / "models" / "shapes.weights"
FRAMES, FPS = 8, 10.0


@pytest.fixture(scope="module")
def net() -> pydarknet.Darknet:
    return pydarknet.load(CFG, WEIGHTS)


@pytest.fixture(scope="module")
def names() -> list[str]:
    return read_names(ROOT / "data" / "shapes.names")


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """8 frames of data/shapes.jpg (128x128, one star the model finds at ~55%), MJPG in .avi."""
    path = tmp_path / "in.avi"
    image = cv2.imread(str(ROOT / "data" / "shapes.jpg"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (128, 128))
    for _ in range(FRAMES):
        writer.write(image)
    writer.release()
    return path


def read_frames(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def test_cli_writes_every_frame_annotated(tmp_path: Path, video: Path, capsys: pytest.CaptureFixture,
                                          net: pydarknet.Darknet, names: list[str]) -> None:
    data = tmp_path / "shapes.data"
    data.write_text(f"classes = 5\nnames = {ROOT / 'data' / 'shapes.names'}\n")
    out = tmp_path / "out.avi"
    code = main(["detector", "demo", str(data), str(CFG), str(WEIGHTS), str(video), "-out_filename", str(out),
                 "-avg", "1", "-dont_show"])
    stdout, stderr = capsys.readouterr()
    assert (code, stderr) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi", "out.avi", "shapes.data"]  # no temp left

    inputs, in_fps = read_frames(video)
    outputs, out_fps = read_frames(out)
    assert len(outputs) == len(inputs) == FRAMES and out_fps == in_fps == FPS
    assert all(o.shape == i.shape == (128, 128, 3) for o, i in zip(outputs, inputs))
    dets = VideoDetector(net, avg=1)(inputs[0])
    assert [d.label(names) for d in dets] == ["circle", "star"]
    expected = annotate(inputs[0], dets, names, 5)
    drawn = np.abs(expected.astype(int) - inputs[0]).max(axis=2) > 60  # the box outline and label
    assert drawn.sum() > 200
    for o, i in zip(outputs, inputs):
        change = np.abs(o.astype(int) - i).max(axis=2)
        assert change[drawn].mean() > 60 and change[~drawn].mean() < 4  # re-encoding noise elsewhere
        assert np.abs(o.astype(int) - expected).mean() < 4  # MJPG re-encoding of the frame and the drawing

    # Darknet's per-frame block: FPS:%.1f, Objects:, a blank line, the detections.
    assert len(re.findall(r"^FPS:\d+\.\d\nObjects:\n\ncircle: \d+%\nstar: \d+%\n", stdout, re.M)) == FRAMES
    assert stdout.splitlines()[-1].startswith(f"{out}: {FRAMES} frames, 128x128 at 10 fps; average FPS:")


def test_darknet_averaging_over_three_frames(tmp_path: Path, video: Path, net: pydarknet.Darknet,
                                             names: list[str]) -> None:
    """Darknet's -avg 3 (default): the first frames are decoded from 1/3 and 2/3 of their output, so the
    circle (97%) and star (93%) appear from the third frame on."""
    seen = []
    result = run_demo(net, str(video), tmp_path / "out.avi", names, on_frame=lambda f: seen.append(f))
    assert result.frames == FRAMES and [f.index for f in seen] == list(range(FRAMES))
    assert all(f.total == FRAMES for f in seen)
    found = [[d.label(names) for d in f.detections] for f in seen]
    assert found == [[], []] + [["circle", "star"]] * (FRAMES - 2)
    single = VideoDetector(net, avg=1)(read_frames(video)[0][0])[0]
    assert seen[-1].detections[0].bbox == pytest.approx(single.bbox, abs=1e-5)
    assert seen[-1].detections[0].probs == pytest.approx(single.probs, abs=1e-5)


def test_frame_averager_is_darknets_axpy_ring() -> None:
    """avg = 0; for each slot in ring order: avg += (float)(1./3) * slot, float32, no FMA."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(1000).astype(np.float32) for _ in range(4)]
    alpha = np.float32(1.0 / 3)
    ring: list[np.ndarray] = [np.zeros(1000, np.float32)] * 3
    average = FrameAverager(3)
    for k, x in enumerate(xs):
        ring[k % 3] = x
        expected = np.zeros(1000, np.float32)
        for slot in ring:
            expected = expected + alpha * slot
        assert np.array_equal(average(torch.from_numpy(x)).numpy(), expected)
    one = FrameAverager(1)
    assert torch.equal(one(torch.from_numpy(xs[0])), torch.from_numpy(xs[0]))


def test_single_frame_matches_detector_test(net: pydarknet.Darknet) -> None:
    """A BGR frame gives the boxes `detector test` gives for the same image file (RGB, letterbox); without
    NMS, as the demo's do_nms_obj and detector test's do_nms_sort keep different boxes."""
    frame = cv2.imread(str(ROOT / "data" / "shapes.jpg"))
    ours = VideoDetector(net, thresh=0.1, avg=1, nms=0)(frame)
    ref = net.detect(str(ROOT / "data" / "shapes.jpg"), thresh=0.1, nms=0)
    assert len(ours) == len(ref) >= 1
    assert sorted((d.classes, d.bbox, d.probs) for d in ours) == sorted((d.classes, d.bbox, d.probs) for d in ref)


@pytest.mark.parametrize("source, message", [
    ("missing.avi", "missing.avi: cannot read video: no such file"),
    ("garbage.avi", "garbage.avi: cannot read video: not a video OpenCV can decode"),
    (".", ".: cannot read video: is a directory"),
    ("99", "cannot open camera 99"),
])
def test_unreadable_video_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                      source: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.avi").write_bytes(b"not a video " * 100)
    data = tmp_path / "shapes.data"
    data.write_text(f"names = {ROOT / 'data' / 'shapes.names'}\n")
    code = main(["detector", "demo", str(data), str(CFG), str(WEIGHTS), source])
    _, err = capsys.readouterr()
    assert code == 2 and err == f"pydarknet: {message}\n"
    assert not (tmp_path / "predictions.avi").exists()


def test_bad_output_and_avg(tmp_path: Path, video: Path, net: pydarknet.Darknet, names: list[str]) -> None:
    with pytest.raises(pydarknet.DarknetError, match="unknown extension"):
        run_demo(net, str(video), tmp_path / "out.gif", names)
    with pytest.raises(pydarknet.DarknetError, match="cannot write video"):
        run_demo(net, str(video), tmp_path / "no" / "such" / "dir" / "out.avi", names)
    with pytest.raises(pydarknet.DarknetError, match="-avg 0"):
        run_demo(net, str(video), tmp_path / "out.avi", names, avg=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi"]


def test_interrupt_keeps_frames_error_keeps_nothing(tmp_path: Path, video: Path, net: pydarknet.Darknet,
                                                    names: list[str]) -> None:
    """Ctrl-C ends a camera stream: the frames so far are a complete video. Any other failure leaves no file."""
    def stop_after_three(frame: Frame) -> None:
        if frame.index == 2:
            raise KeyboardInterrupt

    result = run_demo(net, str(video), tmp_path / "cut.avi", names, on_frame=stop_after_three)
    assert result.frames == 3 and len(read_frames(tmp_path / "cut.avi")[0]) == 3

    def fail(frame: Frame) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_demo(net, str(video), tmp_path / "failed.avi", names, on_frame=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.avi", "in.avi"]
