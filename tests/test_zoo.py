"""Models by name: bundled, cached, downloaded from a local HTTP server, offline, unknown; `models`."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch
from test_download import FileServer

import pydarknet
from conftest import ROOT
from pydarknet import zoo
from pydarknet.cli.main import main
from pydarknet.network import build_network
from pydarknet.paths import ASSETS
from pydarknet.weights import expected_floats

SHAPES_WEIGHTS = (ROOT / "models" / "shapes.weights").read_bytes()
X = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache, no proxy (the servers are local), and a working directory outside the checkout."""
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path / "home"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def _official_shapes(monkeypatch: pytest.MonkeyPatch, url: str) -> zoo.Model:
    """A `remote-shapes` model: the shapes cfg whose weights are served at `url` (size and sha256 known)."""
    model = zoo.Model("shapes.cfg", url + "/remote-shapes.weights", (len(SHAPES_WEIGHTS),),
                      hashlib.sha256(SHAPES_WEIGHTS).hexdigest())
    monkeypatch.setitem(zoo.MODELS, "remote-shapes", model)
    return model


def _reference() -> torch.Tensor:
    return pydarknet.load(ROOT / "cfg" / "shapes.cfg", ROOT / "models" / "shapes.weights")(X)


def _free_port_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_bundled_model_by_name(capsys: pytest.CaptureFixture) -> None:
    net = pydarknet.load("shapes")
    assert net.cfg_path == ASSETS / "cfg" / "shapes.cfg"
    torch.testing.assert_close(net(X), _reference(), rtol=0, atol=0)
    assert main(["summary", "yolo9000"]) == 0  # a name's cfg needs no weights
    assert capsys.readouterr().out.endswith("Floating Point Operations: 49.06 Bn\n")


def test_downloaded_on_first_use_then_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FileServer(SHAPES_WEIGHTS) as server:
        model = _official_shapes(monkeypatch, server.url.rsplit("/", 1)[0])
        assert not zoo.is_cached(model)
        net = pydarknet.load("remote-shapes")
        assert server.ranges_seen == [None]
        cached = tmp_path / "home" / "weights" / "remote-shapes.weights"
        assert cached.read_bytes() == SHAPES_WEIGHTS and zoo.is_cached(model)
        torch.testing.assert_close(net(X), _reference(), rtol=0, atol=0)
        pydarknet.load("remote-shapes")
        assert server.ranges_seen == [None]  # the second load reads the cache


def test_cached_weights_need_no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _official_shapes(monkeypatch, _free_port_url())
    (tmp_path / "home" / "weights").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "remote-shapes.weights").write_bytes(SHAPES_WEIGHTS)
    torch.testing.assert_close(pydarknet.load("remote-shapes")(X), _reference(), rtol=0, atol=0)


def test_offline_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    _official_shapes(monkeypatch, _free_port_url())
    with pytest.raises(pydarknet.DarknetError, match="Connection refused") as err:
        pydarknet.load("remote-shapes")
    assert "'remote-shapes'" in str(err.value) and str(tmp_path / "home" / "weights") in str(err.value)
    assert main(["detect", "remote-shapes", str(ROOT / "data" / "shapes.jpg")]) == 2
    out, err_text = capsys.readouterr()
    assert out == "" and err_text.count("\n") == 1 and "Connection refused" in err_text
    assert not (tmp_path / "home" / "weights" / "remote-shapes.weights").exists()


def test_wrong_download_is_not_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FileServer(SHAPES_WEIGHTS[:-4] + b"\0\0\0\0") as server:  # right size, wrong sha256
        _official_shapes(monkeypatch, server.url.rsplit("/", 1)[0])
        with pytest.raises(pydarknet.DarknetError, match="sha256"):
            pydarknet.load("remote-shapes")
    assert list((tmp_path / "home" / "weights").iterdir()) == []


def test_unknown_name_lists_the_names(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(pydarknet.DarknetError, match="unknown model 'yolov5'") as err:
        pydarknet.load("yolov5")
    assert all(name in str(err.value) for name in zoo.runnable())
    assert main(["detect", "yolov5", "dog.jpg"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(pydarknet.DarknetError, match="training start"):
        pydarknet.load("darknet19_448.conv.23")
    with pytest.raises(pydarknet.DarknetError, match="cannot read cfg"):
        pydarknet.load("missing.cfg")  # a path, not a name


def test_a_file_in_the_working_directory_wins_over_a_name() -> None:
    Path("shapes").write_bytes((ROOT / "cfg" / "yolov2-tiny-voc.cfg").read_bytes())
    assert pydarknet.load("shapes").heads[-1][1].classes == 20
    assert not zoo.is_model_name("shapes")


def test_detect_inputs() -> None:
    assert zoo.detect_inputs(["shapes"]) == ("shapes", None, ["data/shapes.jpg"], "data/shapes.names")
    assert zoo.detect_inputs(["shapes", "a.jpg", "b"]) == ("shapes", None, ["a.jpg", "b"], "data/shapes.names")
    assert zoo.detect_inputs(["yolo9000", "a.jpg"]) == ("yolo9000", None, ["a.jpg"], None)
    assert zoo.detect_inputs(["x.cfg", "x.weights", "a.jpg"]) == ("x.cfg", "x.weights", ["a.jpg"], None)
    with pytest.raises(pydarknet.DarknetError, match="give one or more images"):
        zoo.detect_inputs(["yolov2"])
    with pytest.raises(pydarknet.DarknetError, match="CFG WEIGHTS IMAGE"):
        zoo.detect_inputs(["x.cfg", "a.jpg"])


def test_detect_demo_model_from_anywhere(capsys: pytest.CaptureFixture) -> None:
    """`pydarknet detect shapes`: bundled cfg, weights, names and sample image, from a foreign directory."""
    assert main(["detect", "shapes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("data/shapes.jpg: Predicted in ")
    assert sorted(out[1:]) == ["circle: 97%", "star: 93%"]
    assert Path("predictions.jpg").stat().st_size > 0


def test_models_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _official_shapes(monkeypatch, _free_port_url())
    (tmp_path / "home" / "weights").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "remote-shapes.weights").write_bytes(SHAPES_WEIGHTS)
    (tmp_path / "home" / "weights" / "yolo9000.weights.part").write_bytes(b"\0" * 10)
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(zoo.MODELS) <= set(rows)
    assert rows["shapes"].split()[1:] == ["cfg/shapes.cfg", "shapes.weights", "1.0", "MB", "bundled"]
    assert rows["remote-shapes"].split()[-1] == "cached"
    assert rows["yolov2"].split()[2:] == ["yolov2.weights", "203.9", "MB", "fetched", "on", "first", "use"]
    assert "partly fetched" in rows["yolo9000"]
    assert rows["weights"] == f"weights are cached in {tmp_path / 'home' / 'weights'} (set PYDARKNET_HOME to move it)"


def test_cache_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert zoo.weights_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("PYDARKNET_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.weights_dir() == tmp_path / "xdg" / "pydarknet" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert zoo.weights_dir() == tmp_path / "user" / ".cache" / "pydarknet" / "weights"


def test_table_matches_the_cfgs() -> None:
    """Every model's cfg is bundled, and each official size is a Darknet header + the cfg's floats."""
    partial = {"darknet19_448.conv.23": ("darknet19_448.cfg", 23)}
    for name, model in zoo.MODELS.items():
        assert zoo.lookup(name) is zoo.lookup(model.file) is model
        cfg, upto = partial.get(name, (model.cfg, None))
        assert (ASSETS / "cfg" / cfg).is_file(), name
        if model.bundled:
            assert (ASSETS / model.weights).is_file() and model.sample and (ASSETS / model.sample).is_file()
            continue
        assert model.weights.startswith("https://") and model.sizes, name
        with torch.device("meta"):  # shapes only: no 200 MB of parameters
            floats = expected_floats(build_network(ASSETS / "cfg" / cfg), upto)
        assert all(size - 4 * floats in (16, 20) for size in model.sizes), name


def test_yolo_family_by_name() -> None:
    """yolov3/yolov3-tiny (pjreddie.com, as AlexeyAB's README links them) and yolov4/yolov4-tiny (AlexeyAB's
    releases): AlexeyAB's cfgs, files of its 20-byte header and the cfg's floats."""
    for name in ("yolov3", "yolov3-tiny", "yolov4", "yolov4-tiny"):
        model = zoo.MODELS[name]
        with torch.device("meta"):
            net = build_network(ASSETS / "cfg" / model.cfg)
        assert net.dialect == "alexeyab" and model.file == f"{name}.weights"
        assert model.sizes == (20 + 4 * expected_floats(net),)
    assert zoo.MODELS["yolov4"].weights.startswith(zoo.ALEXEYAB)
