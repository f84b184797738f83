"""`detect` over a directory keeps going past bad images, reports each on one line, exits 2."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np

from conftest import FIXTURES, ROOT


def test_directory_with_broken_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(40):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    (tmp_path / "005_broken.jpg").write_bytes(b"junk")
    (tmp_path / "017_empty.png").write_bytes(b"")
    fx = FIXTURES / "mini_tiny"
    run = subprocess.run([sys.executable, "-m", "pydarknet", "detect", str(fx / "net.cfg"), str(fx / "net.weights"),
                          str(tmp_path), "--json", "--no-draw"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 2
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(records) == 40 and all(r["width"] == 50 and r["height"] == 40 for r in records)
    errors = run.stderr.strip().splitlines()
    assert len(errors) == 2 and "005_broken.jpg" in errors[0] and "017_empty.png" in errors[1]
    assert "Traceback" not in run.stderr
