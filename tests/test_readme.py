"""The README's first command and its Python quick start run as written, from outside the checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


def test_first_command_is_a_plain_install_then_the_demo() -> None:
    lines = [line.split("#")[0].strip() for line in _blocks("bash")[0].splitlines()]
    assert "pip install ." in lines[0] and "-e" not in lines[0].split()  # the package as users get it
    assert lines[1:] == ["pydarknet detect shapes"]  # what .ci/run runs in a fresh venv, elsewhere


def test_the_test_command_is_what_ci_runs() -> None:
    command = re.search(r"## Run the tests\n\n```bash\n(.*?)\n```", README).group(1)
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(f"\n{command}")


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_blocks_run_as_written(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # a directory without the checkout's cfg/ and data/
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path / "home"))
    exec(compile(_blocks("python")[index], f"README.md python block {index}", "exec"), {})
    if index == 0:
        assert capsys.readouterr().out.startswith("['star: 93%'] (0.295")
