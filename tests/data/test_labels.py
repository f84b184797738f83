"""Label paths and files, .data files and lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pydarknet.data.datafile import read_data_file, read_list, resolve_path
from pydarknet.data.labels import label_path, read_labels
from pydarknet.errors import DarknetError


@pytest.mark.parametrize("image, label", [
    ("data/images/x.jpg", "data/labels/x.txt"),
    ("VOC2007/JPEGImages/000001.jpg", "VOC2007/labels/000001.txt"),
    ("set/raw/a.png", "set/labels/a.txt"),
    ("a/b.JPEG", "a/b.txt"),
    ("a/b.JPG", "a/b.txt"),
    # find_replace changes only the first occurrence of each pattern
    ("a/images/b/images/x.jpg", "a/labels/b/images/x.txt"),
    # "raw" is replaced wherever it first occurs, even inside a directory name
    ("/drawings/images/x.png", "/dlabelsings/labels/x.txt"),
    ("x.png.jpg", "x.txt.txt"),
])
def test_label_path_follows_darknet_substitutions(image: str, label: str) -> None:
    assert label_path(image) == label


@pytest.mark.parametrize("image", ["images/x.jpeg", "images/x.bmp", "images/x.PNG", "images/x.jpg.bak"])
def test_label_path_rejects_unmapped_extensions(image: str) -> None:
    with pytest.raises(DarknetError, match="no label path") as err:
        label_path(image)
    assert err.value.file == image


def write(tmp_path: Path, text: str, name: str = "x.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_read_labels_parses_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "0 0.5 0.5 0.2 0.4\r\n\n  3 0.1 0.9 1 0.05  \n")
    boxes, problems = read_labels(path)
    assert problems == []
    assert boxes.dtype == np.float32 and boxes.shape == (2, 5)
    np.testing.assert_allclose(boxes, [[0, .5, .5, .2, .4], [3, .1, .9, 1, .05]], rtol=1e-7)


BAD_LINES = [
    ("0 0.5 0.5 0.2", "expected 5 fields"),
    ("0 0.5 0.5 0.2 0.2 7", "expected 5 fields"),
    ("cat 0.5 0.5 0.2 0.2", "not an integer"),
    ("1.0 0.5 0.5 0.2 0.2", "not an integer"),
    ("-1 0.5 0.5 0.2 0.2", "class -1"),
    ("0 0.5 x 0.2 0.2", "cy 'x' is not a number"),
    ("0 1.5 0.5 0.2 0.2", "cx=1.5 is outside"),
    ("0 0.5 0.5 -0.1 0.2", "w=-0.1 is outside"),
    ("0 0.5 0.5 0.2 nan", "h=nan is outside"),
    ("0 0 0 0.2 0.2", "centred at 0 0"),
]


@pytest.mark.parametrize("line, message", BAD_LINES)
def test_read_labels_stop_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(DarknetError, match=message) as err:
        read_labels(path, policy="stop")
    assert (err.value.file, err.value.line) == (str(path), 2)
    assert str(err.value).startswith(f"{path}:2: ")


def test_read_labels_skip_drops_and_reports_each_bad_line(tmp_path: Path) -> None:
    text = "\n".join(["1 0.5 0.5 0.2 0.2"] + [line for line, _ in BAD_LINES] + ["2 0.3 0.3 0.1 0.1"])
    boxes, problems = read_labels(write(tmp_path, text), policy="skip")
    np.testing.assert_array_equal(boxes[:, 0], [1, 2])
    assert len(problems) == len(BAD_LINES)
    assert problems[0].startswith(f"{tmp_path / 'x.txt'}:2: ")


def test_read_labels_checks_class_count(tmp_path: Path) -> None:
    path = write(tmp_path, "4 0.5 0.5 0.2 0.2\n")
    assert read_labels(path, "stop", classes=5).boxes.shape == (1, 5)
    with pytest.raises(DarknetError, match=r"class 5 must be in \[0, 5\)"):
        read_labels(write(tmp_path, "5 0.5 0.5 0.2 0.2\n"), "stop", classes=5)


def test_missing_label_file_is_no_boxes_with_a_warning(tmp_path: Path) -> None:
    for policy in ("skip", "stop"):
        boxes, problems = read_labels(tmp_path / "none.txt", policy)
        assert boxes.shape == (0, 5)
        assert len(problems) == 1 and "no label file" in problems[0]


def test_unknown_policy_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        read_labels(tmp_path / "x.txt", "ignore")  # type: ignore[arg-type]


def test_read_data_file_strips_all_blanks_and_keeps_first_key(tmp_path: Path) -> None:
    path = write(tmp_path, "# comment\n; also\nclasses = 20\n train  =  a b/train.txt \r\n\nclasses=3\n",
                 "voc.data")
    assert read_data_file(path) == {"classes": "20", "train": "ab/train.txt"}


@pytest.mark.parametrize("line", ["names", "=x", "backup ="])
def test_read_data_file_errors_name_the_line(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, f"classes=1\n{line}\n", "bad.data")
    with pytest.raises(DarknetError, match="expected key = value") as err:
        read_data_file(path)
    assert (err.value.file, err.value.line) == (str(path), 2)


def test_missing_files_are_darknet_errors(tmp_path: Path) -> None:
    for reader in (read_data_file, read_list):
        with pytest.raises(DarknetError, match="cannot read") as err:
            reader(tmp_path / "missing")
        assert err.value.file == str(tmp_path / "missing")
    with pytest.raises(DarknetError, match="is a directory"):
        read_list(tmp_path)


def test_read_list_drops_blank_lines_and_line_ends(tmp_path: Path) -> None:
    assert read_list(write(tmp_path, "a.jpg\r\n\n b c.jpg \nd.jpg")) == ["a.jpg", "b c.jpg", "d.jpg"]


def test_resolve_path_falls_back_to_the_referring_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "train.txt").write_text("")
    data = tmp_path / "sub" / "x.data"
    # not in the working directory (the repo root in tests), so the .data file's parent dir is tried
    assert resolve_path("train.txt", relative_to=data) == tmp_path / "train.txt"
    assert resolve_path("nowhere.txt", relative_to=data) == Path("nowhere.txt")
    assert resolve_path("data/voc.names") == Path("data/voc.names")
