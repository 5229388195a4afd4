"""Image files: atomic writes and loads that fail with a diagnostic.

Outputs are written to a temporary file in the target folder and renamed over the target
(`os.replace` is atomic on one file system), so a crash or Ctrl-C never leaves a half-written
PNG or trace behind. Loading a user's image either gives an RGB PIL image or an SGLError
that points at the program's `load` line.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from sgl.diagnostics import SGLError, Span


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_png(image, path) -> Path:
    """Save a PIL image as PNG, atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


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
