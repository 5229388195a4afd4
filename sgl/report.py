"""The HTML report of one run: images, attention overlays, energy curves, program and IR.

One self-contained file (images inlined as base64 PNG, curves as inline SVG), so a user can
mail it or open it offline. Written atomically like every output of SGL.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Mapping, Sequence

from sgl.files import png_bytes, write_text_atomic

_PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _png_data(image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _img(image, label: str, size: int = 192) -> str:
    return (f'<figure><img src="{_png_data(image)}" width="{size}" height="{size}" '
            f'style="image-rendering:pixelated"><figcaption>{html.escape(label)}</figcaption></figure>')


def energy_svg(trace: Sequence[Mapping], labels: Mapping[str, str], width: int = 640, height: int = 220) -> str:
    """Per-term weighted energy per step as polylines (log-free, each term scaled to its max)."""
    if not trace:
        return "<p>(no guided steps)</p>"
    keys = sorted({k for row in trace for k in row.get("terms", {})}, key=lambda k: int(k) if str(k).isdigit() else k)
    if not keys:
        return "<p>(no active terms)</p>"
    steps = [row["step"] for row in trace]
    last = max(steps) or 1
    pad = 30
    lines = []
    for i, key in enumerate(keys):
        values = [row.get("terms", {}).get(key) for row in trace]
        top = max((v for v in values if v is not None), default=0.0) or 1.0
        points = " ".join(
            f"{pad + (width - 2 * pad) * s / last:.1f},{height - pad - (height - 2 * pad) * v / top:.1f}"
            for s, v in zip(steps, values) if v is not None)
        colour = _PALETTE[i % len(_PALETTE)]
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        lines.append(f'<text x="{width - pad + 4}" y="{pad + 14 * i}" fill="{colour}" font-size="11">'
                     f'term {html.escape(str(key))}</text>')
    legend = "".join(
        f'<li style="color:{_PALETTE[i % len(_PALETTE)]}">term {html.escape(str(k))} (max-scaled): '
        f'<code>{html.escape(labels.get(str(k), ""))}</code></li>' for i, k in enumerate(keys))
    axis = (f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>'
            f'<text x="{pad}" y="{height - 8}" font-size="11">step 0</text>'
            f'<text x="{width - pad - 40}" y="{height - 8}" font-size="11">step {last}</text>')
    return (f'<svg width="{width + 60}" height="{height}" xmlns="http://www.w3.org/2000/svg">{axis}{"".join(lines)}</svg>'
            f"<ul>{legend}</ul>")


def write_report(path: str | Path, *, title: str, program_text: str, ir_text: str,
                 images: Mapping[str, object], overlays: Mapping[str, Sequence[tuple[str, object]]],
                 trace: Sequence[Mapping], term_labels: Mapping[str, str], settings: Mapping,
                 warnings: Sequence[str] = ()) -> Path:
    """Write the report. `images`: name → PIL image; `overlays`: object name → list of
    (caption, PIL image) pairs (attention over the image, original vs edited at some steps);
    `trace`: the per-step rows of trace.json."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    parts.append('<h2>Images</h2><div class="row">' + "".join(_img(im, name) for name, im in images.items()) + "</div>")
    if overlays:
        parts.append("<h2>Attention of each object</h2>")
        for name, figures in overlays.items():
            parts.append(f"<h3><code>{html.escape(name)}</code></h3><div class='row'>"
                         + "".join(_img(im, caption, 128) for caption, im in figures) + "</div>")
    parts.append("<h2>Energy per term</h2>" + energy_svg(trace, term_labels))
    parts.append("<h2>Settings</h2><table>" + "".join(
        f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(str(v))}</code></td></tr>"
        for k, v in settings.items()) + "</table>")
    parts.append(f"<h2>Program</h2><pre>{html.escape(program_text)}</pre>")
    parts.append(f"<h2>Energy IR</h2><pre>{html.escape(ir_text)}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             ".row{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}figcaption{font-size:12px;text-align:center}"
             "pre{background:#f6f6f6;padding:8px;overflow:auto}td{padding:2px 8px}")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    return write_text_atomic(Path(path), doc)
