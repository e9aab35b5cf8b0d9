"""A self-contained HTML report of a campaign store, for people who would rather look.

One file, no network access needed to view it: CSS is inline and every plot is a PNG
embedded as a ``data:`` URI (matplotlib's Agg canvas through :class:`matplotlib.figure.
Figure`, so importing this module never changes the pyplot backend of the caller).
Sections (a section with nothing to show is left out): summary counts; robustness per
sample against δ (a grid of coloured cells); Φ_m per class (bars with the proven
``[lower, upper]`` interval as error bars); where the time went; counterexamples drawn as
pictures for image inputs (original, perturbed, difference -- for a VNN-LIB L∞-ball
property the original is the centre of its input box) or as per-feature bars for tabular
inputs, labelled with the feature names when known (stored with the answers, or the
shipped CTG network's); and a table of the results. By default only the latest answer of
each question is shown (a re-run with other settings replaces the old one on the page).
All text from the store is escaped with :func:`html.escape` (network and property names
come from user files). Tables wrap long names instead of widening the page.

A small script sets ``document.body.dataset.imagesLoaded`` to the number of images that
decoded on ``load`` and ``pageWidth``/``viewportWidth`` to the document's scroll width and
the window's width; the tests read them back from headless Chromium at 1400 px to check
the page really renders and fits.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.store import CampaignStore, StoredResult

STATUS_COLORS = {"holds": "#2e7d32", "violated": "#c62828", "unknown": "#9e9e9e",
                 "optimal": "#1565c0", "bounded": "#6a1b9a", "infeasible": "#ef6c00"}
MAX_WITNESS_FIGURES = 24     # counterexample pictures drawn (the table lists them all)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:2em}
.sub{color:#666;margin-top:0}
.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border-radius:8px;padding:.8em 1.2em;color:#fff;min-width:8em}
.card .n{font-size:2em;font-weight:600}.card .w{opacity:.9}
table{border-collapse:collapse;width:100%;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td.name{overflow-wrap:anywhere}td.num,td.st,td.nw,th{white-space:nowrap}
.tw{max-width:100%;overflow-x:auto}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.st{font-weight:600}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
.empty{color:#888;font-style:italic}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, n = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { n++; }
  }
  document.body.dataset.imagesLoaded = String(n);
  document.body.dataset.pageWidth = String(document.documentElement.scrollWidth);
  document.body.dataset.viewportWidth = String(window.innerWidth);
});
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.6g}"


class _Figures:
    """Counts and encodes figures; ``n`` is the number of ``<img>`` tags emitted."""

    def __init__(self) -> None:
        self.n = 0

    def img(self, fig: Any, alt: str) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        self.n += 1
        return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


# -------------------------------------------------------------------------- pieces
def _summary(records: list[StoredResult]) -> str:
    counts = Counter(r.status or "unknown" for r in records)
    words = ["holds", "violated", "unknown"] + sorted(set(counts) - {"holds", "violated",
                                                                     "unknown"})
    cards = "".join(
        f'<div class="card" style="background:{STATUS_COLORS.get(w, "#455a64")}">'
        f'<div class="n">{counts.get(w, 0)}</div><div class="w">{_e(w)}</div></div>'
        for w in words)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        by_kind[r.kind][r.status or "unknown"] += 1
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td class='num'>{sum(c.values())}</td><td>"
        + ", ".join(f"{_e(s)}: {n}" for s, n in sorted(c.items())) + "</td></tr>"
        for k, c in sorted(by_kind.items()))
    return (f'<div class="cards" id="summary">{cards}</div>'
            f"<table><tr><th>kind</th><th>answers</th><th>by status</th></tr>{rows}</table>")


def _robustness(records: list[StoredResult], figs: _Figures) -> str:
    from matplotlib.colors import ListedColormap

    groups: dict[tuple, list[StoredResult]] = defaultdict(list)
    for r in records:
        groups[(r.network_name, r.params.get("norm", "linf"), r.params.get("k", 1))].append(r)
    out = []
    order = ["holds", "violated", "unknown"]
    cmap = ListedColormap([STATUS_COLORS[s] for s in order])
    for (net, norm, k), recs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        samples = sorted({int(r.params.get("sample", -1)) for r in recs})
        deltas = sorted({float(r.params.get("radius", math.nan)) for r in recs})
        grid = np.full((len(samples), len(deltas)), np.nan)
        si = {s: i for i, s in enumerate(samples)}
        di = {d: j for j, d in enumerate(deltas)}
        for r in recs:
            i, j = si[int(r.params.get("sample", -1))], di[float(r.params.get("radius",
                                                                               math.nan))]
            grid[i, j] = order.index(r.status) if r.status in order else 2
        fig = _figure(1.2 + 0.55 * len(deltas), 0.8 + 0.32 * len(samples))
        ax = fig.add_subplot()
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto")
        ax.set_xticks(range(len(deltas)), [f"{d:g}" for d in deltas], rotation=45)
        names = {int(r.params.get("sample", -1)): str(r.params.get("sample_id", ""))
                 for r in recs}
        ax.set_yticks(range(len(samples)), [names.get(s) or str(s) for s in samples])
        ax.set_xlabel(f"δ ({norm})")
        ax.set_ylabel("sample")
        ax.set_title(_short(f"{net}: robustness (k={k})", 60))
        if grid.size <= 600:
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(j, i, "HV?"[int(v)], ha="center", va="center", color="white",
                            fontsize=8)
        caption = ("Green H = holds (proven robust), red V = violated (replayed "
                   "counterexample), grey ? = unknown; white = not run.")
        out.append(f"<figure>{figs.img(fig, f'robustness grid {net}')}"
                   f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "".join(out)


def _bars_with_interval(records: list[StoredResult], figs: _Figures, xkey: str,
                        xlabel: str, title: str) -> str:
    groups: dict[tuple, list[StoredResult]] = defaultdict(list)
    for r in records:
        groups[(r.network_name, r.params.get("norm"), r.params.get("alpha"),
                r.params.get("k"))].append(r)
    out = []
    for (net, norm, alpha, k), recs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        recs = sorted(recs, key=lambda r: int(r.params.get(xkey, -1)))
        xs = [int(r.params.get(xkey, -1)) for r in recs]
        lo = np.array([np.nan if r.lower is None else r.lower for r in recs])
        hi = np.array([np.nan if r.upper is None else r.upper for r in recs])
        height = np.where(np.isnan(hi), lo, hi)
        fig = _figure(max(3.5, 0.5 * len(xs) + 1.5), 3.0)
        ax = fig.add_subplot()
        colors = [STATUS_COLORS.get(r.status or "unknown", "#455a64") for r in recs]
        pos = np.arange(len(xs))
        ax.bar(pos, np.nan_to_num(height), color=colors, alpha=0.75)
        both = ~np.isnan(lo) & ~np.isnan(hi)
        if both.any():
            ax.errorbar(pos[both], hi[both], yerr=[hi[both] - lo[both], np.zeros(both.sum())],
                        fmt="none", ecolor="black", capsize=4, lw=1.2)
        ax.set_xticks(pos, [str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"perturbation ({norm or '?'})")
        extra = ", ".join(f"{n}={v}" for n, v in (("α", alpha), ("k", k)) if v is not None)
        ax.set_title(_short(f"{net}: {title}" + (f" ({extra})" if extra else ""), 60))
        rows = "".join(
            f"<tr><td>{x}</td><td class='num'>{_fmt(r.lower)}</td>"
            f"<td class='num'>{_fmt(r.upper)}</td><td>{_e(r.status)}</td></tr>"
            for x, r in zip(xs, recs, strict=True))
        out.append(
            f"<figure>{figs.img(fig, f'{title} {net}')}<figcaption>Bar: best value attained "
            "by a replayed witness (upper); error bar down to the proven lower bound."
            f"</figcaption></figure><table><tr><th>{_e(xlabel)}</th><th>lower (proven)</th>"
            f"<th>upper (attained)</th><th>status</th></tr>{rows}</table>")
    return "".join(out)


def _timing(records: list[StoredResult], figs: _Figures) -> str:
    secs = [(r.kind, r.engine or "?", r.seconds or 0.0) for r in records]
    if not secs:
        return ""
    total: dict[str, float] = defaultdict(float)
    count: Counter = Counter()
    for kind, eng, s in secs:
        total[f"{kind}/{eng}"] += s
        count[f"{kind}/{eng}"] += 1
    labels = sorted(total, key=lambda k: -total[k])
    fig = _figure(7.5, 0.8 + 0.35 * len(labels))
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.barh(range(len(labels)), [total[k] for k in labels], color="#546e7a")
    ax1.set_yticks(range(len(labels)), labels)
    ax1.invert_yaxis()
    ax1.set_xlabel("total seconds")
    ax1.set_title("time per kind / engine")
    ax2 = fig.add_subplot(1, 2, 2)
    vals = np.array([s for _, _, s in secs], dtype=float)
    pos = vals[vals > 0]
    if pos.size and pos.max() / pos.min() > 100:
        bins = np.geomspace(pos.min(), pos.max(), 20)
        ax2.hist(pos, bins=bins, color="#78909c")
        ax2.set_xscale("log")
    else:
        ax2.hist(vals, bins=20, color="#78909c")
    from matplotlib.ticker import MaxNLocator

    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("seconds per query")
    ax2.set_ylabel("queries")
    ax2.set_title("distribution")
    rows = "".join(f"<tr><td>{_e(k)}</td><td class='num'>{count[k]}</td>"
                   f"<td class='num'>{total[k]:.2f}</td>"
                   f"<td class='num'>{total[k] / count[k]:.3f}</td></tr>" for k in labels)
    return (f"<figure>{figs.img(fig, 'time')}</figure><div class='tw'><table><tr>"
            f"<th>kind/engine</th><th>queries</th><th>total s</th><th>mean s</th></tr>{rows}"
            "</table></div>")


def image_shape(n: int, input_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """A displayable shape ``(H, W)`` or ``(C, H, W)`` for an input of ``n`` values, or None.

    Uses the network's input shape when it looks like an image (batch and unit axes
    dropped; C in {1, 3}, channels first or last), else recognises 784 = 28×28 (MNIST)
    and 3072 = 3×32×32 (CIFAR). Anything else is tabular.
    """
    if input_shape:
        dims = tuple(int(d) for d in input_shape if int(d) != 1)
        if int(np.prod(dims or (1,))) == n:
            if len(dims) == 2 and min(dims) >= 4:
                return dims
            if len(dims) == 3 and dims[0] == 3 and min(dims[1:]) >= 4:
                return dims
            if len(dims) == 3 and dims[2] == 3 and min(dims[:2]) >= 4:
                return dims
    if n == 784:
        return (28, 28)
    if n == 3072:
        return (3, 32, 32)
    return None


def _as_image(x: np.ndarray, shape: tuple) -> np.ndarray:
    """``(H, W)`` grey or ``(H, W, 3)`` colour, from channels-first or channels-last."""
    img = x.reshape(shape)
    if img.ndim == 3 and shape[0] == 3:
        img = np.moveaxis(img, 0, -1)
    return img


def ball_centre(lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """The centre of an L∞ ball that was clipped to a domain, from its box, or None.

    A robustness property ``clip(x ± ε, dmin, dmax)`` has width ``2ε`` wherever it was not
    clipped; where it was, the bound at the domain edge (``lo == min(lo)`` or
    ``hi == max(hi)``) is the clipped one and the centre is ``ε`` from the other bound.
    Returns None when the box does not look like such a ball (a narrower interval that
    touches neither edge).
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    w = hi - lo
    if lo.size < 4 or not np.all(np.isfinite(w)) or np.max(w) <= 0:
        return None
    full = np.max(w)
    common = np.isclose(w, full, rtol=1e-6, atol=1e-12)
    eps = full / 2.0
    c = (lo + hi) / 2.0
    low_edge = np.isclose(lo, lo.min(), atol=1e-12) & ~common
    high_edge = np.isclose(hi, hi.max(), atol=1e-12) & ~common & ~low_edge
    if np.any(~common & ~low_edge & ~high_edge):
        return None               # a narrower interval away from the domain's edge
    c[low_edge] = hi[low_edge] - eps
    c[high_edge] = lo[high_edge] + eps
    return c


def _vnnlib_centre(r: StoredResult, n_in: int, n_out: int) -> np.ndarray | None:
    """The original input of a VNN-LIB robustness counterexample: its ball's centre."""
    path = r.property_path
    if not path or not os.path.isfile(path):
        return None
    try:
        from nnresilience.spec.vnnlib import read_vnnlib

        prop = read_vnnlib(path, n_in, n_out)
    except Exception:  # noqa: BLE001 - a report must not fail on one unreadable file
        return None
    if len(prop.cases) != 1:
        return None
    return ball_centre(prop.cases[0].region.lo, prop.cases[0].region.hi)


def _witness(r: StoredResult, image: bool = False) -> tuple[np.ndarray | None, np.ndarray] | None:
    d = r.result
    ce = d.get("counterexample")
    if ce and ce.get("x") is not None:
        center = r.params.get("center")
        x = np.asarray(ce["x"], dtype=float)
        if center is not None:
            return np.asarray(center, dtype=float), x
        if image and r.kind == "verify":
            return _vnnlib_centre(r, x.size, len(ce.get("y") or ())), x
        return None, x
    if d.get("a_perturbed") is not None:
        a = d.get("a")
        return (None if a is None else np.asarray(a, dtype=float),
                np.asarray(d["a_perturbed"], dtype=float))
    return None


def _short(text: str, n: int = 70) -> str:
    """``text`` cut to ``n`` characters (figure titles: a long name must not shrink the
    picture; the table below shows names in full)."""
    return text if len(text) <= n else text[:n - 1] + "…"


def _draw_witness(r: StoredResult, orig: np.ndarray | None, pert: np.ndarray,
                  shape: tuple | None, figs: _Figures,
                  names: list[str] | None = None) -> str:
    title = _short(f"{r.kind}: {r.network_name} / {r.property_name}")
    if orig is not None and orig.shape != pert.shape:
        orig = None
    if shape is not None:
        panels = [("perturbed", pert)] if orig is None else [
            ("original", orig), ("perturbed", pert), ("difference", pert - orig)]
        fig = _figure(2.3 * len(panels), 2.5)
        vmin = min(float(np.min(p)) for n, p in panels if n != "difference")
        vmax = max(float(np.max(p)) for n, p in panels if n != "difference")
        for i, (name, v) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            img = _as_image(v, shape)
            if name == "difference":
                m = float(np.max(np.abs(v))) or 1.0
                im = ax.imshow(img if img.ndim == 2 else img.mean(axis=-1), cmap="RdBu_r",
                               vmin=-m, vmax=m)
                fig.colorbar(im, ax=ax, shrink=0.7)
            elif img.ndim == 2:
                ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
            else:
                ax.imshow(np.clip((img - vmin) / ((vmax - vmin) or 1.0), 0, 1))
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(title, fontsize=9)
    else:
        n = pert.size
        fig = _figure(max(4.0, min(0.32 * n + 1.5, 11.0)), 3.0)
        ax = fig.add_subplot()
        idx = np.arange(n)
        if orig is None:
            ax.bar(idx, pert, color=STATUS_COLORS["violated"], label="counterexample")
        elif n <= 60:
            ax.bar(idx - 0.2, orig, width=0.4, color="#607d8b", label="original")
            ax.bar(idx + 0.2, pert, width=0.4, color=STATUS_COLORS["violated"],
                   label="perturbed")
        else:
            ax.plot(idx, orig, color="#607d8b", label="original")
            ax.plot(idx, pert, color=STATUS_COLORS["violated"], label="perturbed")
        if names is not None and len(names) == n and n <= 60:
            ax.set_xticks(idx, names, rotation=60, ha="right", fontsize=7)
            ax.set_xlabel("input feature")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("input feature (index)")
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
    extra = ""
    if orig is not None:
        diff = pert - orig
        changed = np.flatnonzero(np.abs(diff) > 1e-12)
        extra = (f"‖ε‖₁ = {np.abs(diff).sum():.4g}, ‖ε‖∞ = {np.abs(diff).max():.4g}, "
                 f"changed features: {changed.size}")
        if names is not None and len(names) == pert.size and changed.size:
            top = changed[np.argsort(-np.abs(diff[changed]))][:5]
            extra += " (largest: " + ", ".join(f"{names[i]} {diff[i]:+.3g}" for i in top) + ")"
    return f"<figure>{figs.img(fig, title)}<figcaption>{_e(extra)}</figcaption></figure>"


def _input_shapes(records: list[StoredResult]) -> dict[str, tuple | None]:
    """The input shape of each stored network path, when the file can still be loaded."""
    shapes: dict[str, tuple | None] = {}
    for r in records:
        p = r.network_path
        if p is None or p in shapes:
            continue
        shapes[p] = None
        if not os.path.isfile(p):
            continue
        try:
            from nnresilience.loaders import load_network

            shapes[p] = tuple(load_network(p).input_shape)
        except Exception:  # noqa: BLE001 - a report must not fail on one unloadable file
            shapes[p] = None
    return shapes


_SHIPPED_FEATURES: dict[str, list[str]] | None = None


def shipped_feature_names() -> dict[str, list[str]]:
    """``{network content hash: feature names}`` of the networks shipped in the package
    (the CTG network and its 18 features)."""
    global _SHIPPED_FEATURES
    if _SHIPPED_FEATURES is None:
        _SHIPPED_FEATURES = {}
        try:
            from nnresilience.data import ctg_network, ctg_samples

            _SHIPPED_FEATURES[ctg_network().content_hash()] = list(
                ctg_samples().feature_names)
        except Exception:  # noqa: BLE001 - names are a nicety, never a failure
            pass
    return _SHIPPED_FEATURES


def feature_names(r: StoredResult, n: int) -> list[str] | None:
    """Names of the ``n`` inputs of ``r``: stored with the answer, else shipped, else None."""
    names = (r.info or {}).get("feature_names") or shipped_feature_names().get(r.key[0])
    if names is not None and len(names) == n:
        return [str(v) for v in names]
    return None


def _witnesses(records: list[StoredResult], figs: _Figures) -> str:
    shapes = _input_shapes([r for r in records if r.result.get("counterexample")
                            or r.result.get("a_perturbed") is not None])
    cands = []
    for r in records:
        d = r.result
        x = (d.get("counterexample") or {}).get("x") or d.get("a_perturbed")
        if x is None:
            continue
        shape = image_shape(len(x), shapes.get(r.network_path or ""))
        w = _witness(r, image=shape is not None)
        if w is not None:
            cands.append((r, w, shape))
    if not cands:
        return ""
    parts = []
    for r, (orig, pert), shape in cands[:MAX_WITNESS_FIGURES]:
        names = None if shape is not None else feature_names(r, pert.size)
        parts.append(_draw_witness(r, orig, pert, shape, figs, names))
    if len(cands) > MAX_WITNESS_FIGURES:
        parts.append(f'<p class="empty">{len(cands) - MAX_WITNESS_FIGURES} more in the '
                     "table below (not drawn).</p>")
    return "".join(parts)


def _table(records: list[StoredResult]) -> str:
    head = ("<tr><th>#</th><th>kind</th><th>network</th><th>property / query</th>"
            "<th>status</th><th>lower</th><th>upper</th><th>seconds</th><th>timeout</th>"
            "<th>engine</th><th>message</th></tr>")
    rows = []
    for i, r in enumerate(records, 1):
        color = STATUS_COLORS.get(r.status or "", "#455a64")
        msg = r.result.get("message", "")
        rows.append(
            f"<tr><td class='num'>{i}</td><td class='nw'>{_e(r.kind)}</td>"
            f"<td class='name'>{_e(r.network_name)}</td>"
            f"<td class='name'>{_e(r.property_name)}</td>"
            f"<td class='st' style='color:{color}'>{_e(r.status)}</td>"
            f"<td class='num'>{_fmt(r.lower)}</td><td class='num'>{_fmt(r.upper)}</td>"
            f"<td class='num'>{_fmt(r.seconds)}</td>"
            f"<td class='num'>{_fmt(r.params.get('timeout'))}</td>"
            f"<td class='nw'>{_e(r.engine)}</td><td class='name'>{_e(msg)}</td></tr>")
    return f"<div class='tw'><table id='results'>{head}{''.join(rows)}</table></div>"


# ------------------------------------------------------------------------- public
def render_report(store: CampaignStore, title: str = "nnresilience report",
                  latest: bool = True) -> str:
    """The report page as a string (see :func:`write_report`); ``latest``: one answer
    per question (the most recent), else every stored answer."""
    all_records = store.all()
    records = store.all(latest=True) if latest else all_records
    figs = _Figures()
    sections = [("Summary", _summary(records))] if records else []
    rob = [r for r in records if r.kind == "robustness"]
    if rob:
        sections.append(("Robustness per sample and δ", _robustness(rob, figs)))
    phis = [r for r in records if r.kind == "phi"]
    if phis:
        sections.append(("Maximum perturbation bound Φ_m per class",
                         _bars_with_interval(phis, figs, "cls", "class m", "Φ_m")))
    mins = [r for r in records if r.kind == "min_perturbation"]
    if mins:
        sections.append(("Minimum perturbation per sample",
                         _bars_with_interval(mins, figs, "sample", "sample",
                                             "minimum perturbation")))
    timing = _timing(records, figs)
    if timing:
        sections.append(("Where the time went", timing))
    wit = _witnesses(records, figs)
    if wit:
        sections.append(("Counterexamples and witnesses", wit))
    if records:
        sections.append(("All results", _table(records)))
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(f"<h2>{_e(h)}</h2>{s}" for h, s in sections) or \
        '<p class="empty">The store holds no answers yet.</p>'
    hidden = len(all_records) - len(records)
    sub = f"{len(records)} answers from {_e(store.path)}"
    if hidden:
        sub += (f" (the latest of each question; {hidden} earlier answer(s) with other "
                "settings not shown: nnres report --all)")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body data-images-expected='{figs.n}'><h1>{_e(title)}</h1>"
        f"<p class='sub'>{sub} · generated {now}</p>"
        f"{body}<script>{_SCRIPT}</script></body></html>\n")


def write_report(store: CampaignStore | str | Path, out_html: str | Path,
                 title: str = "nnresilience report", latest: bool = True) -> Path:
    """Write the HTML report of ``store`` (a store or its path) to ``out_html`` atomically."""
    from nnresilience.io import write_atomic

    if isinstance(store, CampaignStore):
        text = render_report(store, title, latest)
    else:
        with CampaignStore(store, readonly=True) as s:
            text = render_report(s, title, latest)
    return write_atomic(Path(out_html), text)
