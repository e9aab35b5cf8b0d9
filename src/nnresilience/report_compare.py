"""The page of ``nnres compare``: several networks' resilience side by side.

Sections: a summary table (Ξ, accuracy on the samples, median minimum perturbation);
Φ_m per class as grouped bars per model, each bar the witnessed upper end with an error
bar down to the proven lower end; α_max per class (as ln α_max, the logit margin, since
α_max spans orders of magnitude); the distribution of per-sample minimum perturbations
(for every radius r: the fraction of samples *proven* robust at r, and the fraction
*known* to break at r, per model — the truth for each model lies between its two curves —
plus a box plot); and the per-sample table. Input is the dict of
:func:`nnresilience.compare.compare_models` (or its JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nnresilience.contract import json_number
from nnresilience.report_page import Figures, esc, figure, fmt, page, write_page

_COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")


def _arr(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else json_number(r[key]) for r in rows],
                    float)


def _interval(lo, up, optimal: bool = False) -> str:
    lo, up = json_number(lo) if isinstance(lo, str) else lo, \
        json_number(up) if isinstance(up, str) else up
    if optimal and up is not None:
        return fmt(up)
    return f"[{fmt(lo)}, {fmt(up)}]"


def _summary(cmp: dict[str, Any]) -> str:
    p = cmp["parameters"]
    head = (f"<p>Domain: {len(p['domain']['lo'])} inputs; confidence α = {fmt(p['alpha'])}; "
            f"class must stay in the top-{p['k']}; norm {esc(p['norm'])}; "
            f"{p['samples'] or 0} samples (labels: {esc(p['labels_from'])}).</p>")
    rows = []
    for i, m in enumerate(cmp["models"]):
        xi, s = m["xi"], m["summary"]
        rows.append(
            f"<tr><td><span style='color:{_COLORS[i % len(_COLORS)]}'>■</span> "
            f"{esc(m['name'])}</td><td>{esc(', '.join(m['layers']))}</td>"
            f"<td class='num'>{_interval(xi['lower'], xi['upper'], xi['optimal'])}</td>"
            f"<td class='num'>{fmt(xi.get('argmin_class'))}</td>"
            f"<td class='num'>{fmt(s.get('accuracy'), 3)}</td>"
            f"<td class='num'>{fmt(s.get('median_lower'))}</td>"
            f"<td class='num'>{fmt(s.get('median_upper'))}</td>"
            f"<td class='num'>{fmt(m['seconds'], 3)}</td></tr>")
    return (head + "<div class='scroll'><table id='summary'><tr><th>model</th><th>layers</th>"
            "<th>Ξ [lower, upper]</th><th>Ξ class</th><th>accuracy (samples)</th>"
            "<th>median min. perturbation, proven</th><th>median, witnessed</th>"
            f"<th>seconds</th></tr>{''.join(rows)}</table></div>")


def _grouped(cmp: dict[str, Any], key: str, figs: Figures, ylabel: str, title: str,
             transform=None, witnessed: str = "upper") -> str:
    """Grouped bars per class and model. ``witnessed`` names the end attained by a replayed
    witness (``upper`` for Φ_m; ``lower`` for α_max, whose upper end is the proven one):
    the bar shows it, the error bar spans to the other (proven) end."""
    models = cmp["models"]
    if not any(m[key] for m in models):
        return f"<p class='empty'>No {esc(title)} computed.</p>"
    classes = sorted({r["class"] for m in models for r in m[key]})
    nm = len(models)
    width = 0.8 / nm
    fig = figure(max(5.0, 0.55 * len(classes) * nm + 2.5), 3.2)
    ax = fig.add_subplot()
    pos = np.arange(len(classes))
    drawn = False
    for i, m in enumerate(models):
        rows = {r["class"]: r for r in m[key]}
        lo = np.array([np.nan if c not in rows else _arr([rows[c]], "lower")[0]
                       for c in classes])
        up = np.array([np.nan if c not in rows else _arr([rows[c]], "upper")[0]
                       for c in classes])
        if transform is not None:
            lo, up = transform(lo), transform(up)
        wit, other = (up, lo) if witnessed == "upper" else (lo, up)
        height = np.where(np.isfinite(wit), wit, other)
        x = pos - 0.4 + width * (i + 0.5)
        color = _COLORS[i % len(_COLORS)]
        ax.bar(x, np.where(np.isfinite(height), height, 0.0), width=width * 0.95,
               color=color, alpha=0.8, label=m["name"])
        drawn |= bool(np.any(np.isfinite(height) & (height != 0)))
        both = np.isfinite(lo) & np.isfinite(up)
        if both.any():
            span = np.abs(other[both] - wit[both])
            err = [span, np.zeros(both.sum())] if witnessed == "upper" else \
                [np.zeros(both.sum()), span]
            ax.errorbar(x[both], wit[both], yerr=err, fmt="none", ecolor="black", capsize=3,
                        lw=1)
    if not drawn:
        ax.text(0.5, 0.5, "nothing beyond 0 proven or witnessed\nwithin the time given",
                ha="center", va="center", transform=ax.transAxes, color="#757575")
    ax.set_xticks(pos, [str(c) for c in classes])
    ax.set_xlabel("class m")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    rows_html = []
    for c in classes:
        cells = []
        for m in models:
            r = next((r for r in m[key] if r["class"] == c), None)
            cells.append("<td>–</td>" if r is None else
                         f"<td class='num'>{_interval(r['lower'], r['upper'], r['optimal'])}"
                         + (" (vacuous)" if r.get("status") == "vacuous" else "") + "</td>")
        rows_html.append(f"<tr><td>{c}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{esc(m['name'])}</th>" for m in models)
    caption = ("Bar: the upper end, attained by a replayed witness (the proven lower end "
               "where there is none); error bar down to the proven lower end."
               if witnessed == "upper" else
               "Bar: the lower end, reached by a replayed input (the proven upper end where "
               "there is none); error bar up to the proven upper end.")
    return (f"<figure>{figs.img(fig, title)}<figcaption>{caption}</figcaption></figure>"
            f"<div class='scroll'><table><tr><th>class</th>{head}</tr>{''.join(rows_html)}"
            "</table></div>")


def _distribution(cmp: dict[str, Any], figs: Figures) -> str:
    models = [m for m in cmp["models"] if m["min_perturbation"]]
    if not models:
        return "<p class='empty'>No samples given (--data).</p>"
    ups_all = np.concatenate([_arr(m["min_perturbation"], "upper") for m in models])
    fin = ups_all[np.isfinite(ups_all)]
    rmax = float(fin.max()) * 1.1 if fin.size else 1.0
    r = np.linspace(0.0, rmax or 1.0, 300)
    fig = figure(9.5, 3.4)
    ax = fig.add_subplot(1, 2, 1)
    bx = fig.add_subplot(1, 2, 2)
    data, names = [], []
    for i, m in enumerate(models):
        rows = m["min_perturbation"]
        lo = np.nan_to_num(_arr(rows, "lower"), nan=0.0)
        up = _arr(rows, "upper")
        n = len(rows)
        proven = (lo[None, :] > r[:, None]).sum(axis=1) / n
        broken = (np.nan_to_num(up, nan=np.inf)[None, :] <= r[:, None]).sum(axis=1) / n
        color = _COLORS[i % len(_COLORS)]
        ax.plot(r, proven, color=color, lw=1.8, label=f"{m['name']}: proven robust")
        ax.plot(r, 1.0 - broken, color=color, lw=1.2, ls="--",
                label=f"{m['name']}: not yet broken")
        data.append(up[np.isfinite(up)])
        names.append(m["name"])
    ax.set_xlabel(f"radius r ({cmp['parameters']['norm']})")
    ax.set_ylabel("fraction of samples")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("robust at radius r")
    ax.legend(fontsize=7)
    if any(d.size for d in data):
        bx.boxplot([d if d.size else np.array([np.nan]) for d in data])
        bx.set_xticks(np.arange(1, len(names) + 1), names, rotation=15, fontsize=8)
    bx.set_ylabel("minimum perturbation (witnessed)")
    bx.set_title("per-sample minimum perturbation")
    return (f"<figure>{figs.img(fig, 'minimum perturbation distribution')}<figcaption>Left: "
            "solid, the fraction of samples proven to tolerate every perturbation smaller "
            "than r (proven lower bound > r); dashed, the fraction not (yet) broken by a "
            "replayed perturbation of size ≤ r. Each model's true curve lies between its "
            "two. Right: the witnessed minimum perturbations.</figcaption></figure>")


def _sample_table(cmp: dict[str, Any]) -> str:
    models = [m for m in cmp["models"] if m["min_perturbation"]]
    if not models:
        return ""
    n = len(models[0]["min_perturbation"])
    head = "".join(f"<th>{esc(m['name'])}: label→pred</th><th>{esc(m['name'])}: "
                   "min ‖ε‖</th>" for m in models)
    rows = []
    for i in range(n):
        cells = []
        for m in models:
            r = m["min_perturbation"][i]
            cells.append(f"<td>{r['label']}→{r['predicted']}</td><td class='num'>"
                         f"{_interval(r['lower'], r['upper'], r['optimal'])}</td>")
        rows.append(f"<tr><td>{i}</td>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table id='samples'><tr><th>sample</th>{head}</tr>"
            f"{''.join(rows)}</table></div>")


def render_compare(cmp: dict[str, Any], title: str | None = None) -> str:
    """The comparison page as a string."""
    figs = Figures()
    norm = cmp["parameters"]["norm"]
    sections = [
        ("Summary", _summary(cmp)),
        ("Maximum perturbation bound Φ_m per class",
         _grouped(cmp, "phi", figs, f"Φ_m ({norm})", "Φ_m per class")),
        ("Largest confidence ratio α_max per class",
         _grouped(cmp, "alpha_max", figs, "ln α_max (logit margin)", "ln α_max per class",
                  transform=lambda v: np.log(np.where(v > 0, v, np.nan)),
                  witnessed="lower"))
        if any(m["alpha_max"] for m in cmp["models"]) else None,
        ("Per-sample minimum perturbation", _distribution(cmp, figs) + _sample_table(cmp)),
    ]
    names = " vs ".join(m["name"] for m in cmp["models"])
    return page(title or f"Resilience comparison: {names}",
                f"schema {cmp['schema']} v{cmp['schema_version']}",
                [s for s in sections if s is not None], figs)


def write_compare_page(cmp: dict[str, Any], path: str | Path) -> Path:
    return write_page(render_compare(cmp), path)

