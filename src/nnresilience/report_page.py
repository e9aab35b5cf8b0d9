"""The page frame shared by the contract and comparison pages (same look as the campaign
report of :mod:`nnresilience.report`: its CSS, its image-load script, PNG plots embedded
as ``data:`` URIs, every user string escaped, atomic write).

``body[data-images-expected]`` holds the number of ``<img>`` tags and the load scripts set
``body[data-images-loaded]`` and ``body[data-scroll-width]`` (the laid-out page width): the
tests read them back from headless Chromium (:mod:`nnresilience.testing.browser`).
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.report import _CSS, _SCRIPT, _as_image, _e, _figure, _Figures, image_shape

__all__ = ["Figures", "FigureTime", "as_image", "esc", "figure", "fmt", "input_image_shape",
           "page", "warm_up", "write_page"]

Figures = _Figures
figure = _figure
esc = _e
as_image = _as_image

_EXTRA_CSS = """
.box{border:1px solid #ddd;border-radius:8px;padding:.6em 1em;margin:.8em 0;background:#fcfcfc}
.verdict-holds{color:#2e7d32;font-weight:600}.verdict-fails{color:#c62828;font-weight:600}
.verdict-unknown{color:#757575;font-weight:600}
.scroll{overflow-x:auto}
"""


# the document's width after layout, so a test can check the page fits its viewport
_WIDTH_SCRIPT = """
window.addEventListener('load', function () {
  document.body.dataset.scrollWidth = String(document.documentElement.scrollWidth);
});
"""


def warm_up() -> None:
    """Import matplotlib and draw one tiny PNG (font cache, Agg canvas): a command that
    will draw a page under a deadline pays this before its computation, where the time
    it takes is simply taken from the budget instead of being guessed."""
    fig = _figure(1.0, 1.0)
    fig.add_subplot().plot([0, 1], [0, 1])
    fig.savefig(io.BytesIO(), format="png", dpi=20)


class FigureTime:
    """Draws the figures a page can do without before ``deadline`` (``time.monotonic``;
    None = no limit) only while one more fits, judged by the slowest figure so far: a
    page drawn at the end of a command's time loses witness pictures, never the promise.
    ``skipped`` counts what was left out (the page says so; the JSON has every pair)."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.slowest = 0.0
        self.skipped = 0

    def draw(self, fn: Any, *args: Any, optional: bool = True, **kwargs: Any) -> str:
        """``fn(*args, **kwargs)`` timed; an optional figure that no longer fits is
        skipped (returns '')."""
        if optional and self.deadline is not None \
                and time.monotonic() + self.slowest >= self.deadline:
            self.skipped += 1
            return ""
        t0 = time.monotonic()
        out = fn(*args, **kwargs)
        self.slowest = max(self.slowest, time.monotonic() - t0)
        return out

    def note(self, what: str = "witness pair") -> str:
        if not self.skipped:
            return ""
        return (f"<p class='empty'>{self.skipped} {_e(what)} picture(s) not drawn: the "
                "command's time limit came first (every pair is in the JSON).</p>")


def fmt(v: Any, digits: int = 6) -> str:
    """A number for a table cell: ``inf`` spelled out, None as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    v = float(v)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def input_image_shape(n: int, input_shape: Any) -> tuple[int, ...] | None:
    """:func:`nnresilience.report.image_shape`, plus 64 inputs drawn as 8×8 (the
    scikit-learn digits of ``examples/digits``)."""
    shape = image_shape(n, tuple(input_shape) if input_shape else None)
    if shape is None and n == 64:
        return (8, 8)
    return shape


def page(title: str, subtitle: str, sections: list[tuple[str, str]], figs: _Figures) -> str:
    """The whole HTML document; ``sections`` are ``(heading, html)`` pairs, already escaped."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(f"<h2>{_e(h)}</h2>{s}" for h, s in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}{_EXTRA_CSS}</style></head>"
        f"<body data-images-expected='{figs.n}'><h1>{_e(title)}</h1>"
        f"<p class='sub'>{_e(subtitle)} · generated {now}</p>"
        f"{body}<script>{_SCRIPT}{_WIDTH_SCRIPT}</script></body></html>\n")


def write_page(text: str, path: str | Path) -> Path:
    """Write the page atomically (:func:`nnresilience.io.write_atomic`)."""
    from nnresilience.io import write_atomic

    return write_atomic(path, text)


def draw_pair(a: np.ndarray, b: np.ndarray, title: str, shape: tuple | None, figs: _Figures,
              caption: str = "") -> str:
    """A witness pair as pictures (original, perturbed, difference) or per-feature bars."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if shape is not None:
        fig = _figure(7.0, 2.5)
        vmin, vmax = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        for i, (name, v) in enumerate((("original a", a), ("perturbed a+ε", b),
                                       ("ε", b - a))):
            ax = fig.add_subplot(1, 3, i + 1)
            img = _as_image(v, shape)
            if img.ndim == 3:
                img = img.mean(axis=-1)
            if i == 2:
                m = float(np.max(np.abs(v))) or 1.0
                im = ax.imshow(img, cmap="RdBu_r", vmin=-m, vmax=m)
                fig.colorbar(im, ax=ax, shrink=0.7)
            else:
                ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(title, fontsize=9)
    else:
        n = a.size
        fig = _figure(max(4.0, min(0.28 * n + 1.5, 10.5)), 2.8)
        ax = fig.add_subplot()
        idx = np.arange(n)
        if n <= 60:
            ax.bar(idx - 0.2, a, width=0.4, color="#607d8b", label="original a")
            ax.bar(idx + 0.2, b, width=0.4, color="#c62828", label="perturbed a+ε")
        else:
            ax.plot(idx, a, color="#607d8b", label="original a")
            ax.plot(idx, b, color="#c62828", label="perturbed a+ε")
        ax.set_xlabel("input")
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
    return f"<figure>{figs.img(fig, title)}<figcaption>{_e(caption)}</figcaption></figure>"
