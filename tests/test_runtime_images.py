"""Atomic image and text writes; image loading errors."""

import os

import pytest
from PIL import Image

from sgl.diagnostics import SGLError
from sgl.files import write_text_atomic
from sgl.runtime.images import fit_image, load_image, save_png


def test_save_png_is_atomic_and_round_trips(tmp_path):
    image = Image.new("RGB", (5, 4), (10, 20, 30))
    path = save_png(image, tmp_path / "out" / "a.png")
    assert load_image(path).getpixel((0, 0)) == (10, 20, 30)
    assert os.listdir(tmp_path / "out") == ["a.png"]  # no temporary file left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_text_atomic(tmp_path / "t.json", "old")

    class Broken:
        def save(self, *a, **k):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_png(Broken(), path)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["t.json"]


def test_unreadable_and_missing_images_are_e240(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    for path in (bad, tmp_path / "missing.png"):
        with pytest.raises(SGLError) as err:
            load_image(path)
        assert err.value.diagnostics[0].code == "E240"


def test_fit_image_sizes():
    assert fit_image(Image.new("RGB", (100, 50)), 32, 48).size == (48, 32)
    assert fit_image(Image.new("RGB", (7, 9)), 32, 32).size == (32, 32)
