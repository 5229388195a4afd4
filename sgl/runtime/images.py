"""Image files: atomic writes and loads that fail with a diagnostic.

Outputs are written to a temporary file in the target folder and renamed over the target
(`os.replace` is atomic on one file system), so a crash or Ctrl-C never leaves a half-written
PNG or trace behind. Loading a user's image either gives an RGB PIL image or an SGLError
that points at the program's `load` line.
"""

from __future__ import annotations

import os
from pathlib import Path

from sgl.diagnostics import SGLError, Span
from sgl.files import png_bytes, write_bytes_atomic


def save_png(image, path) -> Path:
    """Save a PIL image as PNG, atomically."""
    return write_bytes_atomic(path, png_bytes(image))


def load_image(path, *, span: Span | None = None):
    """An RGB PIL image from a file; SGLError E240 when missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SGLError.single("E240", f"image {str(path)!r} does not exist", span,
                              hint="paths in `load` are relative to the program file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SGLError.single("E240", f"cannot read image {str(path)!r}", span,
                              notes=(f"{type(exc).__name__}: {exc}",),
                              hint="use a PNG or JPEG file") from None


def fit_image(image, height: int, width: int):
    """Resize so that the image covers height x width, then crop the centre."""
    from PIL import Image

    scale = max(height / image.height, width / image.width)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))
