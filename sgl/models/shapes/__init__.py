"""The embedded default model `shapes` (see MODEL_CARD.md): data generator, builder, trainer,
exporter and pixel measurements. The trained diffusers folder is `weights/`."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
