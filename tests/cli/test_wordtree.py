"""`pydarknet wordtree`: a class's path to the WordTree root, checked against data/9k.tree read here."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES, ROOT
from pydarknet.cli.main import main


@pytest.fixture(scope="module")
def tree9k() -> tuple[list[str], list[int], list[str]]:
    """(synset ids, parent indices, names), read without pydarknet."""
    rows = [line.split() for line in (ROOT / "data" / "9k.tree").read_text().splitlines()]
    names = (ROOT / "data" / "9k.names").read_text().splitlines()
    return [r[0] for r in rows], [int(r[1]) for r in rows], names


def expected_path(tree9k, cls: int) -> list[str]:
    ids, parents, names = tree9k
    lines = []
    while cls >= 0:
        lines.append(f"{cls:5d} {ids[cls]} {names[cls]}")
        cls = parents[cls]
    return lines


def run(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    rc = main(["wordtree", *argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err.splitlines()


def test_dog_path_to_root(capsys, tree9k):
    ids, parents, names = tree9k
    rc, out, _ = run(capsys, "dog")
    dog = names.index("dog")
    assert rc == 0 and ids[dog] == "n02084071"
    assert out == expected_path(tree9k, dog)
    assert out[1].split()[1:] == ["n02083346", "canine"] and parents[ids.index(out[-1].split()[1])] == -1


@pytest.mark.parametrize("query", ["n02084071", "N02084071", "Dog", " dog ", "6912"])
def test_synset_id_index_and_case(capsys, tree9k, query):
    rc, out, _ = run(capsys, query)
    assert rc == 0 and out == expected_path(tree9k, 6912)


def test_ambiguous_name_lists_candidates(capsys, tree9k):
    ids, _, names = tree9k
    rc, out, _ = run(capsys, "crane")
    cranes = [i for i, n in enumerate(names) if n == "crane"]
    assert rc == 2 and len(cranes) == 2
    assert "2 classes" in out[0]
    assert [line.split()[:2] for line in out[1:]] == [[str(c), ids[c]] for c in cranes]
    assert "wading bird" in out[2] and "lifting device" in out[1]


def test_unknown_name_is_one_error_line(capsys):
    rc, out, err = run(capsys, "no such thing")
    assert rc == 2 and out == []
    assert len(err) == 1 and err[0].startswith("pydarknet: ") and "no class 'no such thing'" in err[0]


def test_other_tree_files(capsys, tmp_path):
    (tmp_path / "t.tree").write_text("a -1\nb 0\nc 1\n")
    (tmp_path / "t.names").write_text("root\nmid\nleaf\n")
    rc, out, _ = run(capsys, "leaf", "--tree", str(tmp_path / "t.tree"), "--names", str(tmp_path / "t.names"))
    assert rc == 0 and out == ["    2 c leaf", "    1 b mid", "    0 a root"]


def test_detect_json_path_is_the_wordtree_path(capsys, tree9k):
    """A YOLO9000-style detection's JSON `path` is the same chain of names `wordtree` prints."""
    fx = FIXTURES / "mini_9k"
    assert main(["detect", str(fx / "net.cfg"), str(fx / "net.weights"), "data/dog.jpg", "--json", "--no-draw",
                 "--thresh", "0.01"]) == 0
    dets = json.loads(capsys.readouterr().out)["detections"]
    assert dets
    for det in {d["class_id"]: d for d in dets}.values():
        rc, out, _ = run(capsys, str(det["class_id"]))
        assert rc == 0 and out == expected_path(tree9k, det["class_id"])
        assert det["path"] == [" ".join(line.split()[2:]) for line in out]


def test_hier_help_matches_hierarchy_top_prediction(tmp_path):
    """--hier's help: descend while p*P > HIER, P a class's (absolute) probability, p the product of the P
    already taken. Conditionals .9, .9, .9 give P = .9, .81, .729: the chain P alone passes .6 at every level,
    but p*P = .9*.81*.729 = .531 does not, so the walk stops at the middle class."""
    import torch

    from pydarknet.cli.main import HIER_HELP
    from pydarknet.wordtree import hierarchy_top_prediction, read_tree

    (tmp_path / "t.tree").write_text("a -1\nb 0\nc 1\n")
    tree = read_tree(tmp_path / "t.tree")
    probs = torch.tensor([[0.9, 0.81, 0.729]])
    assert hierarchy_top_prediction(probs, tree, 0.6).tolist() == [1]
    assert hierarchy_top_prediction(probs, tree, 0.5).tolist() == [2]
    assert hierarchy_top_prediction(probs, tree, 0.95).tolist() == [0]  # a root's best class at least
    assert "p*P > HIER" in HIER_HELP and "a root's best class at least" in HIER_HELP
