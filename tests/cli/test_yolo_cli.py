"""`detector test` on the [yolo] family prints what AlexeyAB's Darknet printed for the fixtures
(draw_detections_v3: sorted by the left edge, best class first, `-ext_output` boxes; its informational lines
and the timing aside), on the default inference path and the exact one, both resize modes and both input
sizes; `-out` writes its JSON; `detect` and pjreddie's cfgs take the new options."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES, YOLO_FIXTURES, cfg_for, yolo_infer_dirs
from pydarknet.cli.main import main

PATH_FLAGS = {"default": [], "exact": ["--exact"]}


def image_for(infer_dir):  # noqa: ANN001, ANN201
    return YOLO_FIXTURES / "data" / f"{infer_dir.name.split('_')[1]}.png"


def detector_test(infer_dir, *options: str) -> list[str]:  # noqa: ANN001
    args = ["detector", "test", "cfg/coco.data", str(cfg_for(infer_dir)), str(infer_dir.parent / "net.weights"),
            str(image_for(infer_dir)), "-dont_show", *options]
    if json.loads((infer_dir / "layers.json").read_text())["letterbox"]:
        args.append("-letter_box")
    assert main(args) == 0
    return args


def darknet_lines(infer_dir, mode: str) -> list[str]:  # noqa: ANN001
    """The fixture's stdout from the line after `Predicted in`."""
    lines = (infer_dir / f"cli_stdout_{mode}.txt").read_text().splitlines()
    return lines[next(i for i, line in enumerate(lines) if ": Predicted in " in line) + 1:]


@pytest.mark.parametrize("path", list(PATH_FLAGS))
@pytest.mark.parametrize("mode", ["ext_thresh0.25", "default"])
@pytest.mark.parametrize("infer_dir", yolo_infer_dirs(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_detector_test_prints_alexeyab_lines(infer_dir, mode, path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # predictions.jpg
    options = ["-ext_output", "-thresh", ".25"] if mode.startswith("ext") else []
    detector_test(infer_dir, *options, *PATH_FLAGS[path])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{image_for(infer_dir)}: Predicted in ") and out[0].endswith(" milli-seconds.")
    assert out[1:] == darknet_lines(infer_dir, mode)
    assert (tmp_path / "predictions.jpg").stat().st_size > 0


def test_fixtures_print_multi_label_and_negative_boxes():
    text = [line for d in yolo_infer_dirs() for line in darknet_lines(d, "ext_thresh0.25")]
    assert len(text) > 150 and any("left_x:  -" in line or "top_y:  -" in line for line in text)


@pytest.mark.parametrize("infer_dir", [YOLO_FIXTURES / "mini_v4tiny" / "infer_dog",
                                       YOLO_FIXTURES / "mini_v3" / "infer_dog_letterbox"], ids=lambda d: d.parent.name)
def test_out_writes_alexeyab_json(infer_dir, tmp_path, capsys):
    detector_test(infer_dir, "-out", str(tmp_path / "result.json"), "--no-draw")
    capsys.readouterr()
    text = (tmp_path / "result.json").read_text()
    assert text.startswith(f'[\n{{\n "frame_id":1, \n "filename":"{image_for(infer_dir)}", \n "objects": [ \n  {{')
    assert text.endswith("}\n ] \n}\n]")
    (image,) = json.loads(text)
    ref = json.loads((infer_dir / "detections.json").read_text())["dets_post_nms"]
    # Every class prob of every detection, in Darknet's array order, classes ascending.
    expected = [(cls, e) for e in ref for cls, _ in e["probs"]]
    assert [o["class_id"] for o in image["objects"]] == [cls for cls, _ in expected]
    names = (FIXTURES.parent.parent / "data" / "coco.names").read_text().splitlines()
    for obj, (cls, e) in zip(image["objects"], expected):
        assert obj["name"] == names[cls]
        coords = obj["relative_coordinates"]
        # The fixtures' tolerances (boxes 1e-4 x (1 + |ref|), probs 1e-4), plus %f's rounding to 6 decimals.
        for key, ref_value in zip(("center_x", "center_y", "width", "height"), (e[k] for k in "xywh")):
            assert abs(coords[key] - ref_value) <= 1e-4 * (1 + abs(ref_value)) + 5e-7, key
        assert abs(obj["confidence"] - dict(e["probs"])[cls]) <= 1e-4 + 5e-7
    assert not (tmp_path / "result.json.jpg").exists()


def test_out_json_for_several_images(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = YOLO_FIXTURES / "mini_v3"
    assert main(["detector", "test", "cfg/coco.data", str(net / "net.cfg"), str(net / "net.weights"),
                 str(YOLO_FIXTURES / "data"), "-out", "result.json"]) == 0
    images = json.loads((tmp_path / "result.json").read_text())
    assert [i["frame_id"] for i in images] == [1, 2]
    assert [i["filename"].rsplit("/", 1)[1] for i in images] == ["dog.png", "person.png"]
    assert {p.name for p in tmp_path.glob("*.jpg")} == {"dog_predictions.jpg", "person_predictions.jpg"}
    out = capsys.readouterr().out
    assert out.count("milli-seconds.") == 2


def test_detect_short_form_uses_alexeyab_defaults(tmp_path, capsys):
    """`detect CFG WEIGHTS IMAGE` on a [yolo] cfg: COCO names by class count, AlexeyAB's detect threshold
    (.24) and its lines; -out stays the image name."""
    net = YOLO_FIXTURES / "mini_v4tiny"
    assert main(["detect", str(net / "net.cfg"), str(net / "net.weights"), str(YOLO_FIXTURES / "data" / "dog.png"),
                 "-out", str(tmp_path / "dog")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(" milli-seconds.")
    assert set(darknet_lines(net / "infer_dog", "default")) < set(out[1:])  # .24 adds lines under .25
    assert (tmp_path / "dog.jpg").stat().st_size > 0


def test_letter_box_option_on_a_pjreddie_cfg(tmp_path, capsys, monkeypatch):
    """pjreddie's `detector test` always letterboxes: -letter_box changes nothing, -ext_output neither."""
    monkeypatch.chdir(tmp_path)
    infer_dir = FIXTURES / "mini_voc" / "infer_dog_96"
    png = tmp_path / "dog.png"
    png.write_bytes((YOLO_FIXTURES / "data" / "dog.png").read_bytes())
    base = ["detector", "test", str(FIXTURES.parent.parent / "cfg" / "voc.data"), str(cfg_for(infer_dir)),
            str(infer_dir.parent / "net.weights"), str(png), "--no-draw", "-thresh", ".25"]
    outputs = []
    for extra in ([], ["-letter_box", "-ext_output"]):
        assert main(base + extra) == 0
        outputs.append(capsys.readouterr().out.splitlines()[1:])
    assert outputs[0] == outputs[1] == (infer_dir / "cli_stdout_thresh0.25.txt").read_text().splitlines()[1:]
