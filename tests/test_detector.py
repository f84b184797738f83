"""The detector pipeline's reading: the next image is read while the network runs on this one."""

from __future__ import annotations

import threading

from conftest import ROOT, fixture_net
from pydarknet import detector as detector_module
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError

IMAGES = [ROOT / "data" / f"{name}.jpg" for name in ("dog", "person", "horses")]


def test_next_image_read_ahead_on_a_worker_thread(monkeypatch) -> None:
    """When the first result comes out, the second image has been handed to a reader thread; the results
    are the ones image-by-image detection gives, in order, an unreadable image reported in its place."""
    detector = Detector(fixture_net("mini_tiny"), thresh=0.0)
    expected = [detector.detect([image])[0] for image in IMAGES]
    read_by, pulled = [], []
    as_image = detector_module.as_image

    def recording(source):  # noqa: ANN001, ANN202
        read_by.append(threading.current_thread().name)
        return as_image(source)

    def sources():  # noqa: ANN202
        for source in [*IMAGES[:2], ROOT / "no-such.jpg", IMAGES[2]]:
            pulled.append(source)
            yield source

    monkeypatch.setattr(detector_module, "as_image", recording)
    results = detector.run(sources(), errors="report")
    first = next(results)
    assert pulled == IMAGES[:2]
    rest = list(results)
    assert [r.source for r in [first, *rest]] == [*IMAGES[:2], ROOT / "no-such.jpg", IMAGES[2]]
    assert isinstance(rest[1].error, DarknetError)
    assert [first.detections, rest[0].detections, rest[2].detections] == expected
    assert all(name.startswith("pydarknet-read") for name in read_by) and len(read_by) == 4
