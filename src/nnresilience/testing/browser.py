"""Render an HTML page in headless Chromium and read back what the tests check.

The report pages set ``body[data-images-expected]`` (number of ``<img>`` tags) and, on the
``load`` event, ``body[data-images-loaded]`` (images that decoded): a page whose plots do
not render shows a difference. One browser launch gives the DOM after ``load`` and a
screenshot at the given width (so a test can also check the page fits it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@dataclass
class Rendered:
    images_expected: int
    images_loaded: int
    dom: str
    screenshot: np.ndarray          # (H, W, 3 or 4) floats in [0, 1]
    scroll_width: int | None        # document width in CSS px, when the page reports it


def render(page: str | Path, workdir: Path, width: int = 1400, height: int = 2400,
           browser: str | None = None, timeout: float = 120.0) -> Rendered:
    """Load ``page`` in headless Chromium; raise ``RuntimeError`` if it does not render."""
    from matplotlib.image import imread

    browser = browser or chromium()
    if browser is None:
        raise RuntimeError("no chromium binary")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shot = workdir / "shot.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={workdir / 'profile'}", "--virtual-time-budget=5000",
             f"--window-size={width},{height}", f"--screenshot={shot}", "--dump-dom",
             Path(page).resolve().as_uri()]
    res = subprocess.run(flags, capture_output=True, timeout=timeout)
    if res.returncode != 0 or not shot.is_file():
        raise RuntimeError(f"chromium failed ({res.returncode}): "
                           f"{res.stderr.decode(errors='replace')[-2000:]}")
    dom = res.stdout.decode("utf-8", "replace")
    body = re.search(r"<body[^>]*>", dom)
    tag = body.group(0) if body else ""
    loaded = re.search(r'data-images-loaded="(\d+)"', tag)
    expected = re.search(r'data-images-expected="(\d+)"', tag)
    sw = re.search(r'data-scroll-width="(\d+)"', tag)
    return Rendered(int(expected.group(1)) if expected else -1,
                    int(loaded.group(1)) if loaded else -1, dom, imread(shot),
                    int(sw.group(1)) if sw else None)
